/**
 * How an SCGI request's CGI variables map to the HTTP request the application sees (method, URL,
 * header fields, scheme, remote address) and to the `ScgiEnviron` it can read.
 */
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { headersFromRaw } from "../../src/gateway/ServerRequest.ts"
import { type MappedRequest, mapRequest } from "../../src/scgi/Environ.ts"

/** The variables as the parser returns them: CONTENT_LENGTH and SCGI first, then `rest` in order. */
const received = (rest: ReadonlyArray<readonly [string, string]>, contentLength = "0"): Array<string> => [
  "CONTENT_LENGTH",
  contentLength,
  "SCGI",
  "1",
  ...rest.flat()
]

const map = (
  rest: ReadonlyArray<readonly [string, string]>,
  options: { readonly statics?: Readonly<Record<string, string>>; readonly contentLength?: string } = {}
): MappedRequest => {
  const mapped = mapRequest(received(rest, options.contentLength), options.statics ?? {})
  if (typeof mapped === "string") throw new Error(`refused: ${mapped}`)
  return mapped
}

const refused = (rest: ReadonlyArray<readonly [string, string]>): string => {
  const mapped = mapRequest(received(rest), {})
  if (typeof mapped !== "string") throw new Error(`accepted: ${JSON.stringify(mapped.url)}`)
  return mapped
}

/** The typed environment, decoded. */
const cgiOf = (mapped: MappedRequest) => Effect.runSync(mapped.environ.cgi)

/** Why the typed environment does not decode. */
const cgiFailure = (mapped: MappedRequest): string => Effect.runSync(Effect.flip(mapped.environ.cgi)).message

/** The raw header lines as pairs. */
const pairs = (raw: ReadonlyArray<string>): Array<[string, string]> => {
  const out: Array<[string, string]> = []
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]])
  return out
}

const get: ReadonlyArray<readonly [string, string]> = [["REQUEST_METHOD", "GET"]]

describe("method", () => {
  it("comes from REQUEST_METHOD, any token, case kept", () => {
    expect(map([["REQUEST_METHOD", "POST"]]).method).toBe("POST")
    expect(map([["REQUEST_METHOD", "M-SEARCH"]]).method).toBe("M-SEARCH")
    expect(map([["REQUEST_METHOD", "get"]]).method).toBe("get")
  })

  it("is refused when REQUEST_METHOD is not a token or missing, naming the variable", () => {
    for (const bad of ["G ET", "", "GET\r\n", "GÉT", "(GET)"]) {
      expect(refused([["REQUEST_METHOD", bad]]), JSON.stringify(bad)).toMatch(/REQUEST_METHOD/)
    }
    expect(refused([["REQUEST_URI", "/"]])).toMatch(/REQUEST_METHOD/)
  })
})

describe("URL", () => {
  it("is REQUEST_URI as received when it is a path (origin-form), query and escapes kept", () => {
    expect(map([...get, ["REQUEST_URI", "/a/b%20c?x=1&y=%2F"]]).url).toBe("/a/b%20c?x=1&y=%2F")
    // REQUEST_URI wins over the decoded SCRIPT_NAME/PATH_INFO
    expect(
      map([...get, ["REQUEST_URI", "/raw%2Fslash"], ["SCRIPT_NAME", "/decoded/slash"], ["QUERY_STRING", "q"]]).url
    ).toBe("/raw%2Fslash")
  })

  it("reduces an absolute-form REQUEST_URI to its path and query (RFC 9112 §3.2.2)", () => {
    expect(map([...get, ["REQUEST_URI", "http://example.com/a?b=1"]]).url).toBe("/a?b=1")
    expect(map([...get, ["REQUEST_URI", "https://user@example.com:8443/x/y"]]).url).toBe("/x/y")
    expect(map([...get, ["REQUEST_URI", "http://example.com"]]).url).toBe("/")
    expect(map([...get, ["REQUEST_URI", "http://example.com?q=2"]]).url).toBe("/?q=2")
  })

  it("refuses a REQUEST_URI that is neither a path nor absolute-form", () => {
    for (const bad of ["*", "example.com/a", "a/b", "http:/x", "mailto:a@b"]) {
      expect(refused([...get, ["REQUEST_URI", bad]]), bad).toMatch(/REQUEST_URI is not a path/)
    }
  })

  it("is SCRIPT_NAME + PATH_INFO + ?QUERY_STRING without REQUEST_URI (RFC 3875)", () => {
    expect(map([...get, ["SCRIPT_NAME", "/app"], ["PATH_INFO", "/users/7"], ["QUERY_STRING", "a=1&b"]]).url).toBe(
      "/app/users/7?a=1&b"
    )
    expect(map([...get, ["SCRIPT_NAME", ""], ["PATH_INFO", "/only"]]).url).toBe("/only")
    expect(map([...get, ["SCRIPT_NAME", "/app"], ["QUERY_STRING", ""]]).url).toBe("/app")
    // an empty REQUEST_URI counts as none
    expect(map([...get, ["REQUEST_URI", ""], ["PATH_INFO", "/p"]]).url).toBe("/p")
    // nothing at all is the root
    expect(map(get).url).toBe("/")
    expect(map([...get, ["QUERY_STRING", "x=1"]]).url).toBe("/?x=1")
  })

  it("re-encodes the decoded SCRIPT_NAME and PATH_INFO so the URL parses back to the same path", () => {
    const mapped = map([
      ...get,
      ["SCRIPT_NAME", "/my app"],
      // a literal "%", "?" and "#" in a decoded path, and a non-ASCII byte (latin1 é)
      ["PATH_INFO", "/100%/why?/#1/caf\xe9"],
      ["QUERY_STRING", "q=a%20b"]
    ])
    expect(mapped.url).toBe("/my%20app/100%25/why%3F/%231/caf%E9?q=a%20b")
    const url = new URL(mapped.url, "http://x")
    expect(url.search).toBe("?q=a%20b")
    expect(Buffer.from(decodeURIComponent(url.pathname.replace(/%E9/g, "%C3%A9")))).toEqual(
      Buffer.from("/my app/100%/why?/#1/café")
    )
    // characters that may stand in a path stay as they are
    expect(map([...get, ["PATH_INFO", "/a-b_c.d~e!$&'()*+,;=:@/f"]]).url).toBe("/a-b_c.d~e!$&'()*+,;=:@/f")
  })

  it("refuses SCRIPT_NAME + PATH_INFO that is not a path", () => {
    expect(refused([...get, ["SCRIPT_NAME", "app"]])).toMatch(/not a path/)
  })
})

describe("header fields", () => {
  it("come from HTTP_* variables, HTTP_X_FOO as x-foo, in received order", () => {
    const mapped = map([
      ...get,
      ["HTTP_HOST", "example.com"],
      ["HTTP_USER_AGENT", "curl/8"],
      ["HTTP_X_FORWARDED_FOR", "10.0.0.1"],
      ["HTTP_ACCEPT", "*/*"],
      ["SERVER_SOFTWARE", "nginx"]
    ])
    expect(pairs(mapped.rawHeaders)).toEqual([
      ["host", "example.com"],
      ["user-agent", "curl/8"],
      ["x-forwarded-for", "10.0.0.1"],
      ["accept", "*/*"]
    ])
  })

  it("keep a repeated HTTP_X_FOO as two field lines, joined with ', ' in the environ and in request.headers", () => {
    const mapped = map([...get, ["HTTP_X_FOO", "one"], ["HTTP_HOST", "h"], ["HTTP_X_FOO", "two"]])
    expect(pairs(mapped.rawHeaders)).toEqual([
      ["x-foo", "one"],
      ["host", "h"],
      ["x-foo", "two"]
    ])
    expect(mapped.environ.variables.HTTP_X_FOO).toBe("one, two")
    // Effect's header map, as the application's request.headers gives it
    const headers = headersFromRaw(mapped.rawHeaders, undefined)
    expect(headers["x-foo"]).toBe("one, two")
    expect(headers.host).toBe("h")
  })

  it("take Content-Type from CONTENT_TYPE only, never duplicated by HTTP_CONTENT_TYPE", () => {
    const mapped = map(
      [
        ["REQUEST_METHOD", "POST"],
        ["CONTENT_TYPE", "application/json"],
        ["HTTP_CONTENT_TYPE", "application/json"],
        ["HTTP_CONTENT_LENGTH", "5"]
      ],
      { contentLength: "5" }
    )
    expect(pairs(mapped.rawHeaders)).toEqual([
      ["content-type", "application/json"],
      ["content-length", "5"]
    ])
    // the variables are all still there
    expect(mapped.environ.variables.HTTP_CONTENT_TYPE).toBe("application/json")
    expect(cgiOf(mapped).CONTENT_TYPE).toBe("application/json")
  })

  it("have Content-Length only when CONTENT_LENGTH is over 0, and no Content-Type when CONTENT_TYPE is empty", () => {
    const none = map([...get, ["CONTENT_TYPE", ""]])
    expect(pairs(none.rawHeaders)).toEqual([])
    const some = map([["REQUEST_METHOD", "PUT"]], { contentLength: "12" })
    expect(pairs(some.rawHeaders)).toEqual([["content-length", "12"]])
    expect(cgiOf(some).CONTENT_LENGTH).toBe(12)
  })

  it("get a Host from SERVER_NAME and SERVER_PORT when there is no HTTP_HOST", () => {
    const host = (rest: ReadonlyArray<readonly [string, string]>) =>
      pairs(map([...get, ...rest]).rawHeaders).find(([name]) => name === "host")?.[1]
    expect(host([["SERVER_NAME", "example.com"]])).toBe("example.com")
    expect(
      host([
        ["SERVER_NAME", "example.com"],
        ["SERVER_PORT", "8080"]
      ])
    ).toBe("example.com:8080")
    expect(
      host([
        ["SERVER_NAME", "example.com"],
        ["SERVER_PORT", "80"]
      ])
    ).toBe("example.com")
    // the port is left out only when it is the scheme's
    expect(
      host([
        ["SERVER_NAME", "example.com"],
        ["SERVER_PORT", "443"]
      ])
    ).toBe("example.com:443")
    expect(
      host([
        ["SERVER_NAME", "example.com"],
        ["SERVER_PORT", "443"],
        ["HTTPS", "on"]
      ])
    ).toBe("example.com")
    // HTTP_HOST wins, and is the only Host
    const both = map([...get, ["SERVER_NAME", "internal"], ["SERVER_PORT", "8080"], ["HTTP_HOST", "public.example"]])
    expect(pairs(both.rawHeaders)).toEqual([["host", "public.example"]])
    // no SERVER_NAME, no Host
    expect(host([["SERVER_PORT", "8080"]])).toBeUndefined()
    expect(host([["SERVER_NAME", ""]])).toBeUndefined()
  })

  it("serves a request whose SERVER_PORT or REMOTE_PORT is not a port; the typed environment fails naming it", () => {
    expect(cgiFailure(map([...get, ["REMOTE_PORT", "abc"]]))).toMatch(/REMOTE_PORT/)
    expect(cgiFailure(map([...get, ["REMOTE_PORT", "70000"]]))).toMatch(/REMOTE_PORT/)
    expect(cgiFailure(map([...get, ["REMOTE_PORT", "-1"]]))).toMatch(/REMOTE_PORT/)
    expect(cgiFailure(map([...get, ["SERVER_PORT", "http"]]))).toMatch(/SERVER_PORT/)
    expect(cgiOf(map([...get, ["REMOTE_PORT", "65535"]])).REMOTE_PORT).toBe(65535)
    // a SERVER_PORT that is not a number does not go into Host
    expect(pairs(map([...get, ["SERVER_NAME", "h"], ["SERVER_PORT", "http"]]).rawHeaders)).toEqual([["host", "h"]])
  })
})

describe("scheme and remote address", () => {
  it("is https when HTTPS is on, 1 or yes (any case), or REQUEST_SCHEME is https", () => {
    for (const [name, value] of [
      ["HTTPS", "on"],
      ["HTTPS", "ON"],
      ["HTTPS", "1"],
      ["HTTPS", "yes"],
      ["REQUEST_SCHEME", "https"],
      ["REQUEST_SCHEME", "HTTPS"]
    ] as const) {
      const mapped = map([...get, [name, value]])
      expect(mapped.protocol, `${name}=${value}`).toBe("https")
      expect(mapped.environ.https).toBe(true)
    }
  })

  it("is http otherwise", () => {
    for (const rest of [
      [],
      [["HTTPS", "off"]],
      [["HTTPS", ""]],
      [["HTTPS", "0"]],
      [["REQUEST_SCHEME", "http"]]
    ] as ReadonlyArray<ReadonlyArray<readonly [string, string]>>) {
      const mapped = map([...get, ...rest])
      expect(mapped.protocol, JSON.stringify(rest)).toBe("http")
      expect(mapped.environ.https).toBe(false)
    }
  })

  it("takes the remote address from REMOTE_ADDR, none when absent or empty", () => {
    expect(map([...get, ["REMOTE_ADDR", "203.0.113.9"]]).remoteAddress).toBe("203.0.113.9")
    expect(map([...get, ["REMOTE_ADDR", "::1"]]).remoteAddress).toBe("::1")
    expect(map(get).remoteAddress).toBeUndefined()
    expect(map([...get, ["REMOTE_ADDR", ""]]).remoteAddress).toBeUndefined()
  })
})

describe("environ", () => {
  it("has every variable, standard ones decoded in cgi", () => {
    const mapped = map([
      ["REQUEST_METHOD", "GET"],
      ["REQUEST_URI", "/x"],
      ["SERVER_PORT", "8080"],
      ["REMOTE_PORT", "51234"],
      ["DOCUMENT_ROOT", "/srv"],
      ["CUSTOM_VAR", "custom"]
    ])
    expect(mapped.environ.variables).toEqual({
      CONTENT_LENGTH: "0",
      SCGI: "1",
      REQUEST_METHOD: "GET",
      REQUEST_URI: "/x",
      SERVER_PORT: "8080",
      REMOTE_PORT: "51234",
      DOCUMENT_ROOT: "/srv",
      CUSTOM_VAR: "custom"
    })
    expect(cgiOf(mapped)).toMatchObject({
      CONTENT_LENGTH: 0,
      SCGI: "1",
      REQUEST_METHOD: "GET",
      SERVER_PORT: 8080,
      REMOTE_PORT: 51234,
      DOCUMENT_ROOT: "/srv"
    })
  })

  it("merges the static environ under the request's variables", () => {
    const mapped = map([...get, ["SERVER_NAME", "from-request"]], {
      statics: { SERVER_NAME: "from-static", APP_ENV: "production", HTTPS: "on" }
    })
    expect(mapped.environ.variables.SERVER_NAME).toBe("from-request")
    expect(mapped.environ.variables.APP_ENV).toBe("production")
    // a static variable counts like a received one
    expect(mapped.environ.https).toBe(true)
    expect(mapped.protocol).toBe("https")
    // and is decoded like one
    expect(cgiFailure(map(get, { statics: { REMOTE_PORT: "not a port" } }))).toMatch(/REMOTE_PORT/)
  })

  it("does not let a request's variables leak into the static environ", () => {
    const statics = { APP_ENV: "test" }
    map([...get, ["APP_ENV", "override"], ["OTHER", "x"]], { statics })
    expect(statics).toEqual({ APP_ENV: "test" })
    expect(map(get, { statics }).environ.variables.APP_ENV).toBe("test")
  })
})

describe("variables checked as the HTTP parser checks the same bytes", () => {
  /** Refused with exactly `reason`, which names the variable and echoes none of the refused bytes. */
  const refusedNaming = (rest: ReadonlyArray<readonly [string, string]>, reason: string): void => {
    expect(refused(rest), JSON.stringify(rest)).toBe(reason)
  }

  it("refuses an HTTP_* value with CR, LF, NUL, another control or DEL (RFC 9110 §5.5)", () => {
    for (const bad of ["a\r\nInjected: 1", "a\rb", "a\nb", "a\0b", "a\x01b", "a\x1fb", "a\x7fb", "\x0b", "end\r"]) {
      refusedNaming([...get, ["HTTP_X_A", bad]], "invalid character in HTTP_X_A")
    }
    // wherever the variable is, and also for the ones that do not become fields
    refusedNaming([["HTTP_ACCEPT", "*/*\0"], ...get], "invalid character in HTTP_ACCEPT")
    refusedNaming([...get, ["HTTP_CONTENT_TYPE", "a\r\nb"]], "invalid character in HTTP_CONTENT_TYPE")
    refusedNaming([...get, ["HTTP_CONTENT_LENGTH", "1\n"]], "invalid character in HTTP_CONTENT_LENGTH")
  })

  it("accepts HTAB, SP, VCHAR and obs-text in an HTTP_* value, as received", () => {
    const values = ["a\tb", "\ta b\t", '!~"<>\\{}', "caf\xe9 \x80\xff", ""]
    for (const value of values) {
      expect(pairs(map([...get, ["HTTP_X_A", value]]).rawHeaders), JSON.stringify(value)).toEqual([["x-a", value]])
    }
  })

  it("refuses an HTTP_* name that does not make a field name (RFC 9110 §5.1), without echoing it", () => {
    for (const bad of ["HTTP_", "HTTP_X A", "HTTP_X:A", "HTTP_X\r\nINJECTED", "HTTP_X\0", "HTTP_CAF\xc9", "HTTP_X/Y"]) {
      refusedNaming([...get, [bad, "v"]], "invalid HTTP_* variable name")
    }
    // token characters other than letters, digits and "_" stand as they are
    expect(pairs(map([...get, ["HTTP_X.Y!~", "v"]]).rawHeaders)).toEqual([["x.y!~", "v"]])
  })

  it("refuses a CONTENT_TYPE with CR, LF, NUL, another control or DEL; HTAB is allowed", () => {
    for (const bad of ["a\rb", "text/plain\r\nX: 1", "a\0", "a\x7f", "a\x1b"]) {
      refusedNaming(
        [
          ["REQUEST_METHOD", "POST"],
          ["CONTENT_TYPE", bad]
        ],
        "invalid character in CONTENT_TYPE"
      )
    }
    const mapped = map([
      ["REQUEST_METHOD", "POST"],
      ["CONTENT_TYPE", "text/plain;\tcharset=\xe9"]
    ])
    expect(pairs(mapped.rawHeaders)).toEqual([["content-type", "text/plain;\tcharset=\xe9"]])
  })

  it("refuses an HTTP_HOST that is not an authority, or a repeated one (RFC 9112 §3.2, RFC 9110 §7.2)", () => {
    for (const bad of ["exa mple.com", "user@example.com", "example.com:80x", "[::1", "[::1]x", "a/b", "h\xe9"]) {
      refusedNaming([...get, ["HTTP_HOST", bad]], "invalid HTTP_HOST")
    }
    refusedNaming([...get, ["HTTP_HOST", "example.com\r\nX: 1"]], "invalid character in HTTP_HOST")
    refusedNaming([...get, ["HTTP_HOST", "a.example"], ["HTTP_HOST", "b.example"]], "HTTP_HOST is repeated")
    for (const good of ["example.com", "example.com:8080", "[::1]:80", "127.0.0.1", "xn--caf-dma.example", ""]) {
      expect(pairs(map([...get, ["HTTP_HOST", good]]).rawHeaders), good).toEqual([["host", good]])
    }
  })

  it("gives no Host from a SERVER_NAME that is not a host (nginx's $server_name may be a regex), refusing nothing", () => {
    for (const name of ["~^(www\\.)?(.+)$", "a b", "bad\r\nX: 1", "a/b"]) {
      expect(pairs(map([...get, ["SERVER_NAME", name], ["SERVER_PORT", "8080"]]).rawHeaders), name).toEqual([])
    }
    // a wildcard name is a reg-name
    expect(pairs(map([...get, ["SERVER_NAME", "*.example.com"]]).rawHeaders)).toEqual([["host", "*.example.com"]])
  })

  it("refuses a REQUEST_URI with a control, SP or DEL (RFC 9112 §3.2, RFC 3986 §2)", () => {
    for (const bad of ["/a\rb", "/a\r\nX: 1", "/a\nb", "/a\0", "/a\tb", "/a\x7f", "/a b", "/?q=a b", "http://h/a b"]) {
      refusedNaming([...get, ["REQUEST_URI", bad]], "invalid character in REQUEST_URI")
    }
  })

  it("lets through the REQUEST_URI bytes nginx passes: above 0x7e (UTF-8 paths) and the printable ones", () => {
    // "/café" in UTF-8, as received (Latin-1 decoded)
    const utf8 = Buffer.from("/café?q=ü").toString("latin1")
    expect(map([...get, ["REQUEST_URI", utf8]]).url).toBe(utf8)
    expect(map([...get, ["REQUEST_URI", '/a"<>|{}^`\\[]?b="c"']]).url).toBe('/a"<>|{}^`\\[]?b="c"')
  })

  it("refuses a QUERY_STRING with a control, SP or DEL when it makes the URL (no REQUEST_URI)", () => {
    for (const bad of ["a b", "a=\r\nX: 1", "a\0", "a\t", "a\x7f"]) {
      refusedNaming([...get, ["PATH_INFO", "/p"], ["QUERY_STRING", bad]], "invalid character in QUERY_STRING")
    }
    expect(map([...get, ["PATH_INFO", "/p"], ["QUERY_STRING", "q=caf\xc3\xa9&x"]]).url).toBe("/p?q=caf\xc3\xa9&x")
    // with REQUEST_URI, QUERY_STRING is not part of the request (the app reads it raw in the environ)
    const mapped = map([...get, ["REQUEST_URI", "/x?a%20b"], ["QUERY_STRING", "a b"]])
    expect(mapped.url).toBe("/x?a%20b")
    expect(mapped.environ.variables.QUERY_STRING).toBe("a b")
  })

  it("refuses a REMOTE_ADDR or SERVER_PROTOCOL with a control, SP or DEL (they go into the access log)", () => {
    for (const bad of ["203.0.113.9\n127.0.0.1 - - [forged]", "203.0.113.9 x", "::1\0", "\x7f"]) {
      refusedNaming([...get, ["REMOTE_ADDR", bad]], "invalid character in REMOTE_ADDR")
    }
    for (const bad of ["HTTP/1.1\r\n", "HTTP/1.1 200", "HTTP/1.1\t", "HTTP/1.\x7f"]) {
      refusedNaming([...get, ["SERVER_PROTOCOL", bad]], "invalid character in SERVER_PROTOCOL")
    }
    expect(map([...get, ["REMOTE_ADDR", "unix:"]]).remoteAddress).toBe("unix:")
    expect(map([...get, ["SERVER_PROTOCOL", "HTTP/2.0"]]).protocolLabel).toBe("HTTP/2.0")
  })

  it("checks a static variable like a received one", () => {
    const mapped = mapRequest(received(get), { REMOTE_ADDR: "a\nb" })
    expect(mapped).toBe("invalid character in REMOTE_ADDR")
  })

  it("keeps the refused variables raw in the environ of a request it serves", () => {
    // the checks cover what makes the request; every other variable is the app's to read as sent
    const mapped = map([...get, ["DOCUMENT_ROOT", "/srv\r\nx"], ["CUSTOM", "a\0b"]])
    expect(mapped.environ.variables.DOCUMENT_ROOT).toBe("/srv\r\nx")
    expect(mapped.environ.variables.CUSTOM).toBe("a\0b")
  })
})
