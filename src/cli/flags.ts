/**
 * `effect/cli` flags derived from an options Schema: `--max-body-size 1m` sets `maxBodySize`. The
 * flag's kind comes from the field (booleans, integers, seconds with fractions, sizes with k/m/g
 * suffixes, octal file modes, choices among string literals), its help text from the field's
 * description, so the command line and the library share one definition of every option.
 *
 * Flags only turn text into values; the options Schema itself still decides what a value may be
 * (`--port 70000` parses as an integer and is refused when the options are decoded).
 *
 * @since 0.1.0
 */
import { Option, type Schema, SchemaAST } from "effect"
import { Flag } from "effect/cli"

/**
 * What a flag gives: the encoded value of its option field.
 *
 * @since 0.1.0
 * @category models
 */
export type FlagValue = string | number | boolean

/**
 * A flag of the command line and the option field it sets.
 *
 * @since 0.1.0
 * @category models
 */
export interface OptionFlag {
  /** The option field: `maxBodySize`. */
  readonly key: string
  /** The flag's name without dashes: `max-body-size`. */
  readonly name: string
  /** `None` when the flag is not given, so that the options Schema supplies the default. */
  readonly flag: Flag.Flag<Option.Option<FlagValue>>
}

/**
 * How the command line departs from the options' names and types.
 *
 * @since 0.1.0
 * @category models
 */
export interface FlagOverrides {
  /** Options whose flag has another name: `{ path: "socket" }` gives `--socket`. */
  readonly rename?: Readonly<Record<string, string>>
  /** Options with no flag of their own (nested ones, given through other flags). */
  readonly exclude?: ReadonlyArray<string>
  /** Integer options written in octal (file modes: `--socket-mode 660`). */
  readonly octal?: ReadonlyArray<string>
  /** Help text to append to an option's description (its defaults, where it applies). */
  readonly note?: (key: string, ast: SchemaAST.AST) => string
}

/** camelCase → kebab-case: maxBodySize → max-body-size. */
const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** The string literals a field accepts, if it is a choice among them. */
const choicesOf = (ast: SchemaAST.AST): ReadonlyArray<string> => {
  const out: Array<string> = []
  const visit = (node: SchemaAST.AST): void => {
    if (node._tag === "Union") node.types.forEach(visit)
    else if (node._tag === "Literal" && typeof node.literal === "string") out.push(node.literal)
  }
  visit(SchemaAST.toEncoded(ast))
  return out
}

/** The field's encoded kind; a field with a default encodes as `T | undefined`. */
const kindOf = (ast: SchemaAST.AST): "string" | "number" | "boolean" | "other" => {
  const encoded = SchemaAST.toEncoded(ast)
  const types = (encoded._tag === "Union" ? encoded.types : [encoded]).filter((type) => type._tag !== "Undefined")
  if (types.every((type) => type._tag === "Number")) return "number"
  if (types.every((type) => type._tag === "Boolean")) return "boolean"
  if (types.every((type) => type._tag === "String" || (type._tag === "Literal" && typeof type.literal === "string"))) {
    return "string"
  }
  return "other"
}

/** Whether the field checks for an integer (`Schema.isInt()`), as Effect's own AST code tells. */
const isInteger = (ast: SchemaAST.AST): boolean =>
  (ast.checks ?? []).some((check) => check.annotations?.representation?.id === "effect/schema/isInt")

const sizeUnits: Readonly<Record<string, number>> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/**
 * A size in bytes, with binary k/m/g suffixes: "65536", "64k", "10m", "1g" (also "64KiB", "10MB").
 *
 * @since 0.1.0
 */
export const parseSize = (raw: string): Option.Option<number> => {
  const match = /^(\d+)(?:([kmg])(?:i?b)?)?$/i.exec(raw)
  if (match === null) return Option.none()
  return Option.some(Number(match[1]) * (match[2] === undefined ? 1 : sizeUnits[match[2].toLowerCase()]))
}

/**
 * A size as `--help` shows it: 16k rather than 16384.
 *
 * @since 0.1.0
 */
export const formatSize = (bytes: number): string => {
  for (const unit of ["g", "m", "k"]) {
    if (bytes > 0 && bytes % sizeUnits[unit] === 0) return `${bytes / sizeUnits[unit]}${unit}`
  }
  return String(bytes)
}

/** A file mode in octal, as chmod(1) takes it: "660" or "0660". */
const parseOctal = (raw: string): Option.Option<number> =>
  /^0?[0-7]{3}$/.test(raw) ? Option.some(Number.parseInt(raw, 8)) : Option.none()

/**
 * Whether an option field is a size in bytes, written with k/m/g suffixes on the command line.
 * By convention these are the integer fields named `...Size`.
 *
 * @since 0.1.0
 */
export const isSizeField = (key: string, ast: SchemaAST.AST): boolean =>
  key.endsWith("Size") && kindOf(ast) === "number" && isInteger(ast)

/** The flag that parses one option field's text. */
const baseFlag = (
  name: string,
  key: string,
  ast: SchemaAST.AST,
  overrides: FlagOverrides
): Flag.Flag<FlagValue> | undefined => {
  const choices = choicesOf(ast)
  if (choices.length > 0) return Flag.Literals(name, choices)
  switch (kindOf(ast)) {
    case "boolean": {
      const flag = Flag.Boolean(name)
      // `--no-delay` is already a negative: effect/cli would add `--no-no-delay`.
      return name.startsWith("no-") ? Flag.withoutNegation(flag) : flag
    }
    case "number":
      if (overrides.octal?.includes(key)) {
        return Flag.String(name).pipe(
          Flag.withMetavar("mode"),
          Flag.filterMap(parseOctal, () => "an octal file mode such as 660")
        )
      }
      if (isSizeField(key, ast)) {
        return Flag.String(name).pipe(
          Flag.withMetavar("size"),
          Flag.filterMap(parseSize, () => "a size in bytes, with an optional k, m or g suffix: 1024, 64k, 10m")
        )
      }
      // Integers (ports, counts) are whole numbers; other numbers are seconds, fractions allowed.
      return isInteger(ast) ? Flag.Int(name) : Flag.Finite(name).pipe(Flag.withMetavar("seconds"))
    case "string":
      return Flag.String(name)
    case "other":
      return undefined
  }
}

/**
 * The flags for a Struct schema's fields, in the fields' order. Fields whose type has no
 * command-line form (records, nested structs) must be excluded or given flags of their own.
 *
 * @since 0.1.0
 */
export const optionFlags = (fields: Schema.Struct.Fields, overrides: FlagOverrides = {}): ReadonlyArray<OptionFlag> =>
  Object.entries(fields)
    .filter(([key]) => !overrides.exclude?.includes(key))
    .map(([key, schema]) => {
      const name = kebab(overrides.rename?.[key] ?? key)
      const flag = baseFlag(name, key, schema.ast, overrides)
      // A programming error, not a user's: it fails when the module loads, so every test run sees it.
      if (flag === undefined) throw new Error(`option ${key} has no command-line form: exclude it or give it a flag`)
      const description = [SchemaAST.resolveDescription(schema.ast) ?? "", overrides.note?.(key, schema.ast) ?? ""]
      return {
        key,
        name,
        flag: flag.pipe(Flag.withDescription(description.filter((part) => part !== "").join(" ")), Flag.optional)
      }
    })

/**
 * The options a parsed command line gives, keyed by field: the flags that were not given are
 * absent, so that the options Schema supplies their defaults.
 *
 * @since 0.1.0
 */
export const givenOptions = (
  parsed: Readonly<Record<string, Option.Option<FlagValue>>>
): Readonly<Record<string, FlagValue>> =>
  Object.fromEntries(
    Object.entries(parsed).flatMap(([key, value]) => (Option.isSome(value) ? [[key, value.value]] : []))
  )
