/**
 * Throwaway TLS material for tests, made with the openssl command at run time: a self-signed
 * server certificate for localhost, a client CA, a client certificate it signed, and a
 * self-signed client certificate it did not.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export interface Pem {
  /** PEM private key. */
  readonly key: string
  /** PEM certificate. */
  readonly cert: string
  readonly keyFile: string
  readonly certFile: string
}

export interface Certs {
  /** The directory holding the files; `remove` deletes it. */
  readonly dir: string
  /** Self-signed, CN=localhost, SAN DNS:localhost and IP:127.0.0.1. */
  readonly server: Pem
  /** A CA for client certificates, CN=Test Client CA. */
  readonly clientCa: Pem
  /** CN=alice, O=Example, signed by clientCa. */
  readonly client: Pem
  /** CN=mallory, self-signed: not signed by clientCa. */
  readonly stranger: Pem
  readonly remove: () => void
}

const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

const openssl = (dir: string, args: ReadonlyArray<string>): void => {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] })
}

const read = (dir: string, name: string): Pem => ({
  key: Fs.readFileSync(Path.join(dir, `${name}.key`), "utf8"),
  cert: Fs.readFileSync(Path.join(dir, `${name}.crt`), "utf8"),
  keyFile: Path.join(dir, `${name}.key`),
  certFile: Path.join(dir, `${name}.crt`)
})

const selfSigned = (dir: string, name: string, subject: string, extensions: ReadonlyArray<string>): void =>
  openssl(dir, [
    "req",
    "-x509",
    ...ec,
    "-subj",
    subject,
    "-days",
    "1",
    ...extensions.flatMap((ext) => ["-addext", ext]),
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`
  ])

/** Generates the certificates into a fresh temporary directory. */
export const makeCerts = (): Certs => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-tls-"))
  selfSigned(dir, "server", "/CN=localhost", ["subjectAltName=DNS:localhost,IP:127.0.0.1"])
  selfSigned(dir, "ca", "/CN=Test Client CA", ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign"])
  selfSigned(dir, "stranger", "/CN=mallory", ["extendedKeyUsage=clientAuth"])
  openssl(dir, ["req", "-new", ...ec, "-subj", "/CN=alice/O=Example", "-keyout", "client.key", "-out", "client.csr"])
  Fs.writeFileSync(Path.join(dir, "client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    "client.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-set_serial",
    "2",
    "-days",
    "1",
    "-extfile",
    "client.ext",
    "-out",
    "client.crt"
  ])
  return {
    dir,
    server: read(dir, "server"),
    clientCa: read(dir, "ca"),
    client: read(dir, "client"),
    stranger: read(dir, "stranger"),
    remove: () => Fs.rmSync(dir, { recursive: true, force: true })
  }
}
