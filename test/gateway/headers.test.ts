/**
 * Effect's header map as the app reads it (`request.headers`), built from the field lines as
 * received: lower-case names whatever the spelling, repeated fields joined (RFC 9110 §5.3),
 * Cookie lines with "; " (RFC 6265 §5.4).
 */
import { describe, expect, it } from "vitest"
import { headersFromRaw } from "../../src/gateway/ServerRequest.ts"

describe("headersFromRaw", () => {
  it("names are lower case in every spelling, common or not", () => {
    const headers = headersFromRaw(
      [
        "Content-Type",
        "text/plain",
        "USER-AGENT",
        "curl",
        "accept",
        "*/*",
        "X-Custom-Thing",
        "1",
        "x-forwarded-FOR",
        "10.0.0.1"
      ],
      undefined
    )
    expect({ ...headers }).toEqual({
      "content-type": "text/plain",
      "user-agent": "curl",
      accept: "*/*",
      "x-custom-thing": "1",
      "x-forwarded-for": "10.0.0.1"
    })
  })

  it("joins repeated fields whatever their spelling; Cookie lines with '; '", () => {
    const headers = headersFromRaw(
      ["Accept", "text/html", "ACCEPT", "text/plain", "Cookie", "a=1", "cookie", "b=2", "X-Tag", "one", "x-tag", "two"],
      undefined
    )
    expect(headers.accept).toBe("text/html, text/plain")
    expect(headers.cookie).toBe("a=1; b=2")
    expect(headers["x-tag"]).toBe("one, two")
  })

  it("an authority from the request target takes the place of Host", () => {
    expect(headersFromRaw(["Host", "a.example"], "b.example:8080").host).toBe("b.example:8080")
  })
})
