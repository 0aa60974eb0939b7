/**
 * Command-line flags derived from an options Schema: `--max-body-size 1m` sets `maxBodySize`. The
 * flag's kind (string, number, boolean) comes from the field's encoded type, so the command line
 * and the library share one definition of every option.
 *
 * @since 0.1.0
 */
import { Data, Result, type Schema, SchemaAST } from "effect"

/**
 * A command line that cannot be understood.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

type Kind = "string" | "number" | "boolean"

/** A flag of the command line, derived from one options field. */
export interface Flag {
  readonly name: string
  readonly key: string
  readonly kind: Kind
  readonly description: string
  /** The value of a string flag given without one (`--access-log` means `--access-log combined`). */
  readonly implicit?: string | undefined
  /** The values a choice flag accepts. */
  readonly choices: ReadonlyArray<string>
  /** A number written in octal (file modes: `--socket-mode 660`). */
  readonly octal?: boolean | undefined
}

/**
 * How the command line departs from the options' names.
 *
 * @since 0.1.0
 * @category models
 */
export interface FlagOverrides {
  /** Options whose flag has another name: `{ path: "socket" }` gives `--socket`. */
  readonly rename?: Readonly<Record<string, string>>
  /** Options with no flag of their own (nested ones, given through other flags). */
  readonly exclude?: ReadonlyArray<string>
  readonly implicit?: Readonly<Record<string, string>>
  readonly octal?: ReadonlyArray<string>
}

/** camelCase → kebab-case: maxBodySize → max-body-size. */
export const flagName = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** The literal values a field accepts, if it is a choice among strings. */
const choicesOf = (ast: SchemaAST.AST): ReadonlyArray<string> => {
  const out: Array<string> = []
  const visit = (node: SchemaAST.AST): void => {
    if (node._tag === "Union") node.types.forEach(visit)
    else if (node._tag === "Literal" && typeof node.literal === "string") out.push(node.literal)
  }
  visit(SchemaAST.toEncoded(ast))
  return out
}

const kindOf = (ast: SchemaAST.AST): Kind => {
  const encoded = SchemaAST.toEncoded(ast)
  const types = encoded._tag === "Union" ? encoded.types : [encoded]
  for (const type of types) {
    if (type._tag === "Number") return "number"
    if (type._tag === "Boolean") return "boolean"
  }
  return "string"
}

/**
 * The flags for a Struct schema's fields.
 *
 * @since 0.1.0
 */
export const flagsOf = (fields: Schema.Struct.Fields, overrides: FlagOverrides = {}): ReadonlyArray<Flag> =>
  Object.entries(fields)
    .filter(([key]) => !overrides.exclude?.includes(key))
    .map(([key, schema]) => ({
      name: flagName(overrides.rename?.[key] ?? key),
      key,
      kind: kindOf(schema.ast),
      description: SchemaAST.resolveDescription(schema.ast) ?? "",
      implicit: overrides.implicit?.[key],
      choices: choicesOf(schema.ast),
      octal: overrides.octal?.includes(key)
    }))

const sizeUnits: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** Whole numbers, with k/m/g (binary) suffixes for sizes: "64k", "1m". */
const parseNumber = (flag: Flag, raw: string): Result.Result<number, UsageError> => {
  if (flag.octal) {
    return /^0?[0-7]{3}$/.test(raw)
      ? Result.succeed(Number.parseInt(raw, 8))
      : Result.fail(
          new UsageError({ message: `--${flag.name}: expected an octal mode like 660, got ${JSON.stringify(raw)}` })
        )
  }
  if (/^\d+(\.\d+)?$/.test(raw) && /Timeout$/.test(flag.key)) return Result.succeed(Number(raw))
  const match = /^(\d+)(?:([kmg])(?:i?b)?)?$/i.exec(raw)
  if (match === null) {
    return Result.fail(
      new UsageError({ message: `--${flag.name}: expected a whole number, got ${JSON.stringify(raw)}` })
    )
  }
  const unit = match[2] === undefined ? "" : match[2].toLowerCase()
  if (unit !== "" && !flag.key.endsWith("Size")) {
    return Result.fail(
      new UsageError({ message: `--${flag.name}: expected a whole number, got ${JSON.stringify(raw)}` })
    )
  }
  return Result.succeed(Number(match[1]) * sizeUnits[unit])
}

const parseBoolean = (flag: Flag, raw: string): Result.Result<boolean, UsageError> =>
  raw === "true"
    ? Result.succeed(true)
    : raw === "false"
      ? Result.succeed(false)
      : Result.fail(new UsageError({ message: `--${flag.name}: expected true or false, got ${JSON.stringify(raw)}` }))

/**
 * The parsed command line: positional arguments and option values keyed by field name.
 *
 * @since 0.1.0
 * @category models
 */
export interface ParsedArgs {
  readonly positional: ReadonlyArray<string>
  readonly options: Readonly<Record<string, string | number | boolean>>
  readonly help: boolean
}

/**
 * Parses `--flag value`, `--flag=value`, boolean `--flag` / `--no-flag`, and positionals.
 *
 * @since 0.1.0
 */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  flags: ReadonlyArray<Flag>
): Result.Result<ParsedArgs, UsageError> => {
  const byName = new Map(flags.map((flag) => [flag.name, flag]))
  const positional: Array<string> = []
  const options: Record<string, string | number | boolean> = {}
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === "--help" || arg === "-h") {
      help = true
      continue
    }
    if (arg === "--") {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (!arg.startsWith("--")) {
      positional.push(arg)
      continue
    }
    const eq = arg.indexOf("=")
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    let inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1)
    let flag = byName.get(name)
    if (flag === undefined && name.startsWith("no-")) {
      const negated = byName.get(name.slice(3))
      if (negated !== undefined && negated.kind === "boolean" && inline === undefined) {
        flag = negated
        name = negated.name
        inline = "false"
      }
    }
    if (flag === undefined) return Result.fail(new UsageError({ message: `unknown option --${name}` }))
    if (flag.key in options) return Result.fail(new UsageError({ message: `--${name} given more than once` }))
    let raw = inline
    if (raw === undefined) {
      if (flag.kind === "boolean") {
        raw = "true"
      } else if (flag.implicit !== undefined && !flag.choices.includes(argv[i + 1] ?? "")) {
        raw = flag.implicit
      } else {
        raw = argv[++i]
        if (raw === undefined) return Result.fail(new UsageError({ message: `--${name} needs a value` }))
      }
    }
    if (flag.choices.length > 0 && !flag.choices.includes(raw)) {
      return Result.fail(
        new UsageError({ message: `--${name} must be one of ${flag.choices.join(", ")}, got ${JSON.stringify(raw)}` })
      )
    }
    const value: Result.Result<string | number | boolean, UsageError> =
      flag.kind === "number"
        ? parseNumber(flag, raw)
        : flag.kind === "boolean"
          ? parseBoolean(flag, raw)
          : Result.succeed(raw)
    if (Result.isFailure(value)) return Result.fail(value.failure)
    options[flag.key] = value.success
  }
  return Result.succeed({ positional, options, help })
}
