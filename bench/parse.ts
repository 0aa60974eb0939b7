/**
 * The HTTP/1.1 request parser apart, in this process: nanoseconds per request head for a minimal
 * GET (wrk's: a request line and Host) on a fresh parser each time (a keep-alive connection makes
 * its parser when a request arrives), the same 16 at a time (pipelined), and a browser's GET of
 * eleven fields, four at a time. The three run interleaved, so the parser's code sees all three
 * kinds of input as a server's does. What `npm run bench` cannot resolve (a few percent of a
 * request's CPU) shows here.
 *
 * Usage: node bench/parse.ts [rounds]
 */
import { RequestParser } from "../src/http/Parser.ts"

const minimal = "GET / HTTP/1.1\r\nHost: 127.0.0.1:18370\r\n\r\n"
const browser =
  "GET /assets/app.js?v=3 HTTP/1.1\r\nHost: www.example.com\r\nConnection: keep-alive\r\n" +
  'sec-ch-ua: "Chromium";v="131", "Not_A Brand";v="24"\r\n' +
  "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
  "Accept: */*\r\nSec-Fetch-Site: same-origin\r\nReferer: https://www.example.com/\r\n" +
  "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
  "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes; _ga=GA1.1.123456789.1700000000\r\n\r\n"

interface Case {
  readonly label: string
  readonly input: Buffer
  readonly heads: number
  readonly iterations: number
  readonly freshParser: boolean
}

const cases: ReadonlyArray<Case> = [
  { label: "minimal GET", input: Buffer.from(minimal, "latin1"), heads: 1, iterations: 300_000, freshParser: true },
  {
    label: "minimal GET pipelined x16",
    input: Buffer.from(minimal.repeat(16), "latin1"),
    heads: 16,
    iterations: 30_000,
    freshParser: false
  },
  {
    label: "browser GET (11 fields) x4",
    input: Buffer.from(browser.repeat(4), "latin1"),
    heads: 4,
    iterations: 50_000,
    freshParser: false
  }
]

/** Nanoseconds per head over one run of a case. */
const measure = (c: Case): number => {
  let parser = new RequestParser()
  let heads = 0
  const started = process.hrtime.bigint()
  for (let i = 0; i < c.iterations; i++) {
    if (c.freshParser) parser = new RequestParser()
    parser.push(c.input)
    for (;;) {
      const event = parser.next()
      if (event._tag === "Head") heads++
      else if (event._tag === "NeedData") break
      else if (event._tag !== "End") throw new Error(`${c.label}: ${event._tag}`)
    }
  }
  const ns = Number(process.hrtime.bigint() - started) / (c.iterations * c.heads)
  if (heads !== c.iterations * c.heads) throw new Error(`${c.label}: ${heads} heads parsed`)
  return ns
}

const rounds = Number(process.argv[2] ?? 5)
if (!(Number.isInteger(rounds) && rounds > 0)) throw new Error(`rounds: not a positive integer: ${process.argv[2]}`)
const results: Array<Array<number>> = cases.map(() => [])
// The first round warms the JIT up and is not counted.
for (let round = 0; round <= rounds; round++) {
  cases.forEach((c, i) => {
    const ns = measure(c)
    if (round > 0) results[i].push(ns)
  })
  if (round > 0) process.stderr.write(`round ${round}/${rounds}\n`)
}
for (const [i, c] of cases.entries()) {
  const sorted = [...results[i]].sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)]
  console.log(
    `${c.label.padEnd(28)} ${median.toFixed(0).padStart(6)} ns per head (median; rounds ${results[i].map((ns) => ns.toFixed(0)).join(", ")})`
  )
}
