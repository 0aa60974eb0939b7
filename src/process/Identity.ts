/**
 * Users and groups: names resolved to ids (for a unix socket's owner, for the identity workers
 * run as) and dropping this process's privileges once it has bound what needed root.
 *
 * Node has no getpwnam: names are looked up in /etc/passwd and /etc/group, then with `getent`
 * (which also asks NSS: LDAP, systemd's dynamic users). Numbers are taken as ids as they are.
 *
 * @since 0.1.0
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { Effect } from "effect"
import { InvalidOptions } from "../errors.ts"

/**
 * A user to run as: its ids and name (for supplementary groups).
 *
 * @since 0.1.0
 * @category models
 */
export interface Identity {
  readonly uid: number
  readonly gid: number
  /** The user's name; undefined for a uid with no entry. */
  readonly name: string | undefined
}

const isId = (text: string): boolean => /^\d+$/.test(text) && Number(text) < 2 ** 32 - 1

/** The entry for `key` (a name, or an id in field 2) in a colon-separated database. */
const entryOf = (database: "passwd" | "group", key: string): ReadonlyArray<string> | undefined => {
  const byId = isId(key)
  const matches = (fields: ReadonlyArray<string>) => (byId ? fields[2] === key : fields[0] === key)
  try {
    for (const line of Fs.readFileSync(`/etc/${database}`, "utf8").split("\n")) {
      const fields = line.split(":")
      if (fields.length >= 3 && matches(fields)) return fields
    }
  } catch {
    // no file: getent may still know
  }
  try {
    const out = ChildProcess.execFileSync("getent", [database, key], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5_000
    })
    const fields = out.trim().split("\n")[0]?.split(":") ?? []
    return fields.length >= 3 && matches(fields) ? fields : undefined
  } catch {
    // getent exits 2 for an unknown key, and may be missing
    return undefined
  }
}

/**
 * A user by name or uid: its uid, its primary group and its name. A bare uid with no entry is
 * taken as it is, with the group of the same number.
 *
 * @since 0.1.0
 */
export const lookupUser = (option: string, user: string): Effect.Effect<Identity, InvalidOptions> =>
  Effect.suspend((): Effect.Effect<Identity, InvalidOptions> => {
    const fields = entryOf("passwd", user)
    if (fields !== undefined) {
      return Effect.succeed({ uid: Number(fields[2]), gid: Number(fields[3]), name: fields[0] })
    }
    if (isId(user)) return Effect.succeed({ uid: Number(user), gid: Number(user), name: undefined })
    return Effect.fail(new InvalidOptions({ option, detail: `no such user: ${user}` }))
  })

/**
 * A group's id, by name or number.
 *
 * @since 0.1.0
 */
export const lookupGroup = (option: string, group: string): Effect.Effect<number, InvalidOptions> =>
  Effect.suspend(() => {
    if (isId(group)) return Effect.succeed(Number(group))
    const fields = entryOf("group", group)
    if (fields !== undefined) return Effect.succeed(Number(fields[2]))
    return Effect.fail(new InvalidOptions({ option, detail: `no such group: ${group}` }))
  })

/**
 * The identity `user` and `group` options ask for: the user's, with its primary group unless
 * `group` names another; only a group keeps this process's user. Undefined when neither is given.
 * Refused unless this process runs as root (only root can change its user or group) or it is
 * already that identity.
 *
 * @since 0.1.0
 */
export const resolveIdentity = (options: {
  readonly user?: string | undefined
  readonly group?: string | undefined
}): Effect.Effect<Identity | undefined, InvalidOptions> =>
  Effect.gen(function* () {
    const { user, group } = options
    if (user === undefined && group === undefined) return undefined
    const base: Identity =
      user === undefined
        ? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, name: undefined }
        : yield* lookupUser("user", user)
    const identity = group === undefined ? base : { ...base, gid: yield* lookupGroup("group", group) }
    const uid = process.getuid?.()
    const gid = process.getgid?.()
    if (uid === undefined || gid === undefined) {
      return yield* new InvalidOptions({
        option: user === undefined ? "group" : "user",
        detail: "needs a POSIX system"
      })
    }
    if (uid !== 0 && (identity.uid !== uid || identity.gid !== gid)) {
      return yield* new InvalidOptions({
        option: user === undefined ? "group" : "user",
        detail: `changing to uid ${identity.uid}, gid ${identity.gid} needs root; this process runs as uid ${uid}, gid ${gid}`
      })
    }
    return identity
  })

/**
 * Creates `path` if need be and gives it to `identity`, so that a file this process opens before
 * it drops root (an access log) can still be reopened after a rotation, and its workers, started
 * as `identity`, can open it.
 *
 * @since 0.1.0
 */
export const giveFile = (option: string, path: string, identity: Identity): Effect.Effect<void, InvalidOptions> =>
  Effect.try({
    try: () => {
      const fd = Fs.openSync(path, "a", 0o640)
      try {
        Fs.fchownSync(fd, identity.uid, identity.gid)
      } finally {
        Fs.closeSync(fd)
      }
    },
    catch: (error) =>
      new InvalidOptions({
        option,
        detail: `cannot give ${path} to uid ${identity.uid}: ${error instanceof Error ? error.message : String(error)}`
      })
  })

/**
 * Becomes `identity` for good: no supplementary groups (as a pool's workers, which libuv starts
 * with none, and as gunicorn does by default), then the group, then the user (the other way
 * round, setuid would leave no right to change the groups). Root cannot be regained afterwards.
 *
 * @since 0.1.0
 */
export const dropPrivileges = (identity: Identity): Effect.Effect<void, InvalidOptions> =>
  Effect.try({
    try: () => {
      if (process.getuid?.() !== 0) return
      process.setgroups?.([identity.gid])
      process.setgid?.(identity.gid)
      process.setuid?.(identity.uid)
    },
    catch: (error) =>
      new InvalidOptions({
        option: "user",
        detail: `cannot become uid ${identity.uid}, gid ${identity.gid}: ${error instanceof Error ? error.message : String(error)}`
      })
  })
