/**
 * A typed nginx configuration for NginxManager (servermgr's `Nginx` config, as data): where to
 * listen, and mappings from URL prefixes to a directory, a redirect, HTTP upstreams or SCGI
 * upstreams (TCP or unix, several servers each); rendered to an nginx.conf whose every path is
 * under one prefix directory, so nginx runs as any user without touching /etc or /var.
 *
 * Rendering is pure: the same config and options give the same text, which the tests read.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import * as Path from "node:path"
import { describeEndpoint, type Endpoint } from "./Endpoint.ts"

/**
 * A directory served at a URL prefix (`alias`), with optional directory listings.
 *
 * @since 0.1.0
 * @category models
 */
export interface FilesMapping {
  readonly _tag: "Files"
  readonly location: string
  readonly directory: string
  readonly autoindex: boolean
}

/**
 * A redirect of a URL prefix.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedirectMapping {
  readonly _tag: "Redirect"
  readonly location: string
  /** The target; nginx variables such as `$request_uri` are allowed. */
  readonly to: string
  readonly status: 301 | 302 | 303 | 307 | 308
}

/**
 * A URL prefix passed to HTTP upstream servers, with `X-Forwarded-*` headers and idle upstream
 * connections kept alive.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProxyMapping {
  readonly _tag: "Proxy"
  readonly location: string
  readonly upstreams: ReadonlyArray<Endpoint>
  /** Idle keep-alive connections per worker to the upstreams; 0 for a connection per request. */
  readonly keepalive: number
  /** Buffer responses (nginx's default); off for streamed responses. */
  readonly buffering: boolean
}

/**
 * A URL prefix passed to SCGI upstream servers (TCP or unix).
 *
 * @since 0.1.0
 * @category models
 */
export interface ScgiMapping {
  readonly _tag: "Scgi"
  readonly location: string
  readonly upstreams: ReadonlyArray<Endpoint>
  /** Buffer responses (nginx's default); off for streamed responses. */
  readonly buffering: boolean
}

/**
 * One mapping of a URL prefix.
 *
 * @since 0.1.0
 * @category models
 */
export type Mapping = FilesMapping | RedirectMapping | ProxyMapping | ScgiMapping

/**
 * The whole configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface NginxConfig {
  readonly listen: { readonly host: string; readonly port: number }
  readonly mappings: ReadonlyArray<Mapping>
  /** Largest request body (`client_max_body_size`), e.g. "10m" (default "1m", nginx's). */
  readonly clientMaxBodySize?: string | undefined
  /** The loopback-only `stub_status` location, the health check (default "/nginx_status"). */
  readonly statusPath?: string | undefined
  /** Worker processes (default 1). */
  readonly workerProcesses?: number | undefined
  readonly serverName?: string | undefined
}

/**
 * Serves `directory` at `location` ("/static/").
 *
 * @since 0.1.0
 * @category constructors
 */
export const files = (
  location: string,
  directory: string,
  options: { readonly autoindex?: boolean | undefined } = {}
): FilesMapping => ({ _tag: "Files", location, directory, autoindex: options.autoindex ?? false })

/**
 * Redirects `location` to `to` (302 unless `status` says otherwise).
 *
 * @since 0.1.0
 * @category constructors
 */
export const redirect = (
  location: string,
  to: string,
  options: { readonly status?: RedirectMapping["status"] | undefined } = {}
): RedirectMapping => ({ _tag: "Redirect", location, to, status: options.status ?? 302 })

/**
 * Passes `location` to HTTP `upstreams` (balanced round-robin).
 *
 * @since 0.1.0
 * @category constructors
 */
export const proxy = (
  location: string,
  upstreams: ReadonlyArray<Endpoint>,
  options: { readonly keepalive?: number | undefined; readonly buffering?: boolean | undefined } = {}
): ProxyMapping => ({
  _tag: "Proxy",
  location,
  upstreams,
  keepalive: options.keepalive ?? 16,
  buffering: options.buffering ?? true
})

/**
 * Passes `location` to SCGI `upstreams` (balanced round-robin).
 *
 * @since 0.1.0
 * @category constructors
 */
export const scgi = (
  location: string,
  upstreams: ReadonlyArray<Endpoint>,
  options: { readonly buffering?: boolean | undefined } = {}
): ScgiMapping => ({ _tag: "Scgi", location, upstreams, buffering: options.buffering ?? true })

/**
 * What upstream nginx's own `scgi_params` sets; written next to the configuration, so it does
 * not depend on the system's copy.
 *
 * @since 0.1.0
 */
export const scgiParams = `scgi_param  REQUEST_METHOD     $request_method;
scgi_param  REQUEST_URI        $request_uri;
scgi_param  QUERY_STRING       $query_string;
scgi_param  CONTENT_TYPE       $content_type;
scgi_param  DOCUMENT_URI       $document_uri;
scgi_param  DOCUMENT_ROOT      $document_root;
scgi_param  SCGI               1;
scgi_param  SERVER_PROTOCOL    $server_protocol;
scgi_param  REQUEST_SCHEME     $scheme;
scgi_param  HTTPS              $https if_not_empty;
scgi_param  REMOTE_ADDR        $remote_addr;
scgi_param  REMOTE_PORT        $remote_port;
scgi_param  SERVER_PORT        $server_port;
scgi_param  SERVER_NAME        $server_name;
`

/** A string as an nginx token: quoted when it holds anything but safe characters. */
const token = (value: string): string =>
  /^[A-Za-z0-9_\-./:$?=&%~+@]+$/.test(value) ? value : `"${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`

const withSlash = (path: string): string => (path.endsWith("/") ? path : `${path}/`)

const indent = (lines: ReadonlyArray<string>, spaces: number): string =>
  lines.map((line) => (line === "" ? line : `${" ".repeat(spaces)}${line}`)).join("\n")

/** The `upstream` block of mapping `index`, and its name. */
const upstreamBlock = (
  index: number,
  upstreams: ReadonlyArray<Endpoint>,
  keepalive: number
): { name: string; block: ReadonlyArray<string> } => {
  const name = `upstream_${index}`
  return {
    name,
    block: [
      `upstream ${name} {`,
      ...upstreams.map((endpoint) => `  server ${describeEndpoint(endpoint)};`),
      ...(keepalive > 0 ? [`  keepalive ${keepalive};`] : []),
      "}"
    ]
  }
}

const renderMapping = (
  mapping: Mapping,
  index: number
): { upstream: ReadonlyArray<string>; location: ReadonlyArray<string> } => {
  switch (mapping._tag) {
    case "Files":
      return {
        upstream: [],
        location: [
          `location ${token(withSlash(mapping.location))} {`,
          `  alias ${token(withSlash(Path.resolve(mapping.directory)))};`,
          ...(mapping.autoindex ? ["  autoindex on;"] : []),
          "}"
        ]
      }
    case "Redirect":
      return {
        upstream: [],
        location: [`location ${token(mapping.location)} {`, `  return ${mapping.status} ${token(mapping.to)};`, "}"]
      }
    case "Proxy": {
      const { name, block } = upstreamBlock(index, mapping.upstreams, mapping.keepalive)
      return {
        upstream: block,
        location: [
          `location ${token(mapping.location)} {`,
          `  proxy_pass http://${name};`,
          // Keep-alive to the upstreams needs HTTP/1.1 and no "Connection: close" from nginx.
          "  proxy_http_version 1.1;",
          '  proxy_set_header Connection "";',
          // $host, not $http_host: a request without Host (HTTP/1.0) would go upstream as HTTP/1.1
          // without one, which RFC 9112 §3.2 forbids (Node upstreams answer 400); $host falls back
          // to the server name.
          "  proxy_set_header Host $host;",
          "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
          "  proxy_set_header X-Forwarded-Proto $scheme;",
          "  proxy_set_header X-Forwarded-Host $host;",
          "  proxy_set_header X-Real-IP $remote_addr;",
          ...(mapping.buffering ? [] : ["  proxy_buffering off;"]),
          "}"
        ]
      }
    }
    case "Scgi": {
      // SCGI is a connection per request: no keep-alive to its upstreams.
      const { name, block } = upstreamBlock(index, mapping.upstreams, 0)
      return {
        upstream: block,
        location: [
          `location ${token(mapping.location)} {`,
          "  include scgi_params;",
          `  scgi_pass ${name};`,
          ...(mapping.buffering ? [] : ["  scgi_buffering off;"]),
          "}"
        ]
      }
    }
  }
}

/**
 * Options of `render`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RenderOptions {
  /** The number the status location reports in `X-Nginx-Generation` (default 0). */
  readonly generation?: number | undefined
  /**
   * The `user` directive: who the workers run as when nginx starts as root (nginx's default
   * there is "nobody"). None when undefined.
   */
  readonly user?: string | undefined
}

/**
 * The nginx.conf for `config`, with every file under `prefix` (logs/, temp/, nginx.pid). Meant
 * for `nginx -p PREFIX -c CONF -g 'daemon off;'`: it has no `daemon` directive of its own. The
 * error log goes to stderr, where the manager keeps its tail for errors, and to logs/error.log.
 *
 * @since 0.1.0
 * @category rendering
 */
export const render = (config: NginxConfig, prefix: string, options: RenderOptions = {}): string => {
  const file = (name: string) => Path.join(prefix, name)
  const statusPath = config.statusPath ?? "/nginx_status"
  const rendered = config.mappings.map(renderMapping)
  const listen = describeEndpoint(config.listen)
  const user = options.user === undefined ? [] : [`user ${token(options.user)};`]
  return [
    "# generated by effect-appserver NginxManager",
    ...user,
    "master_process on;",
    `worker_processes ${config.workerProcesses ?? 1};`,
    `pid ${file("nginx.pid")};`,
    "error_log stderr notice;",
    `error_log ${file("logs/error.log")} notice;`,
    "",
    "events {",
    "  worker_connections 1024;",
    "}",
    "",
    "http {",
    `  access_log ${file("logs/access.log")};`,
    `  client_body_temp_path ${file("temp/client_body")};`,
    `  proxy_temp_path ${file("temp/proxy")};`,
    `  scgi_temp_path ${file("temp/scgi")};`,
    `  fastcgi_temp_path ${file("temp/fastcgi")};`,
    `  uwsgi_temp_path ${file("temp/uwsgi")};`,
    `  client_max_body_size ${config.clientMaxBodySize ?? "1m"};`,
    "  default_type application/octet-stream;",
    // The types browsers need to show a file rather than download it (nginx's own mime.types is
    // not assumed to exist next to the binary).
    `  types { ${mimeTypes} }`,
    "",
    ...rendered.flatMap((mapping) => (mapping.upstream.length === 0 ? [] : [indent(mapping.upstream, 2), ""])),
    "  server {",
    `    listen ${listen};`,
    `    server_name ${token(config.serverName ?? "localhost")};`,
    "",
    `    location = ${token(statusPath)} {`,
    "      stub_status;",
    "      allow 127.0.0.1;",
    "      allow ::1;",
    // Listening on one of this machine's other addresses, the health check connects from it.
    ...(ownAddress(config.listen.host) ? [`      allow ${config.listen.host};`] : []),
    "      deny all;",
    "      access_log off;",
    // Which configuration answers, so a reload can wait until the new one does.
    `      add_header X-Nginx-Generation ${options.generation ?? 0} always;`,
    "    }",
    ...rendered.flatMap((mapping) => ["", indent(mapping.location, 4)]),
    "  }",
    "}",
    ""
  ].join("\n")
}

/** A specific address of this machine that is neither loopback (allowed anyway) nor a wildcard. */
const ownAddress = (host: string): boolean =>
  Net.isIP(host) !== 0 && !["0.0.0.0", "::", "127.0.0.1", "::1"].includes(host)

/** File extensions and their media types for file mappings. */
const mimeTypes = [
  "text/html html htm;",
  "text/plain txt;",
  "text/css css;",
  "text/xml xml;",
  "text/csv csv;",
  "text/markdown md;",
  "application/javascript js mjs;",
  "application/json json map;",
  "application/wasm wasm;",
  "application/pdf pdf;",
  "image/svg+xml svg svgz;",
  "image/png png;",
  "image/jpeg jpg jpeg;",
  "image/gif gif;",
  "image/webp webp;",
  "image/avif avif;",
  "image/x-icon ico;",
  "font/woff woff;",
  "font/woff2 woff2;",
  "audio/mpeg mp3;",
  "video/mp4 mp4;",
  "video/webm webm;"
].join(" ")
