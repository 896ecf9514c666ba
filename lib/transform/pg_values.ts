/**
 * PostgreSQL values as CEL sees them: the CEL type declared for a column of a
 * given type, its text form (pgoutput text, COPY text after unescaping) read
 * into a CEL value, and a CEL result written back as text PostgreSQL parses.
 *
 * int2/int4/int8/oid are `int` (exact, as BigInt); float4/float8 `double`;
 * numeric is `double` when its declared precision keeps every value exact
 * (15 digits or fewer), else `string` holding the exact text (convert with
 * `double(x)` where a rounded value is acceptable); bool `bool`; bytea
 * `bytes`; date, timestamp and timestamptz `google.protobuf.Timestamp` (a
 * timestamp without zone is read as UTC, a date as its midnight UTC); json and
 * jsonb `dyn` (maps, lists, strings, doubles, bools, null); one-dimensional
 * arrays of those `list<…>`; every other type `string` (its text form).
 */

/** CEL type names used by kvsz. */
export const TIMESTAMP = "google.protobuf.Timestamp";

const INT_OIDS = new Set([20, 21, 23, 26]);
const DOUBLE_OIDS = new Set([700, 701]);
const TIMESTAMP_OIDS = new Set([1082, 1114, 1184]);
const JSON_OIDS = new Set([114, 3802]);
const NUMERIC = 1700;
const BOOL = 16;
const BYTEA = 17;
/** Array type OID -> element type OID, for the built-in arrays CEL sees as lists. */
const ARRAY_ELEMENTS = new Map<number, number>([
  [1000, 16],
  [1001, 17],
  [1005, 21],
  [1007, 23],
  [1016, 20],
  [1028, 26],
  [1021, 700],
  [1022, 701],
  [1231, 1700],
  [1009, 25],
  [1015, 1043],
  [1014, 1042],
  [2951, 2950],
  [1182, 1082],
  [1115, 1114],
  [1185, 1184],
  [199, 114],
  [3807, 3802],
]);

/** Largest numeric precision whose values all survive a double exactly (by shortest repr). */
const EXACT_DOUBLE_DIGITS = 15;

/** How one column's text is read into CEL. */
export type ValueKind =
  | "int"
  | "double"
  | "bool"
  | "bytes"
  | "timestamp"
  | "json"
  | "string";

/** A column's CEL view: its declared type and how its text is read. */
export interface CelColumnType {
  /** The CEL type declared for the variable, e.g. `int`, `list<string>`. */
  cel: string;
  /** How the text is read (for a list: how each element is). */
  kind: ValueKind;
  /** True for a one-dimensional array read as a list. */
  list: boolean;
}

/** The CEL view of a column of type `typeOid` (with `typeMod`, for numeric's precision). */
export function celColumnType(typeOid: number, typeMod = -1): CelColumnType {
  const element = ARRAY_ELEMENTS.get(typeOid);
  if (element !== undefined) {
    const kind = scalarKind(element, -1);
    return { cel: `list<${celName(kind)}>`, kind, list: true };
  }
  const kind = scalarKind(typeOid, typeMod);
  return { cel: celName(kind), kind, list: false };
}

function scalarKind(typeOid: number, typeMod: number): ValueKind {
  if (INT_OIDS.has(typeOid)) return "int";
  if (DOUBLE_OIDS.has(typeOid)) return "double";
  if (typeOid === NUMERIC) return exactNumeric(typeMod) ? "double" : "string";
  if (typeOid === BOOL) return "bool";
  if (typeOid === BYTEA) return "bytes";
  if (TIMESTAMP_OIDS.has(typeOid)) return "timestamp";
  if (JSON_OIDS.has(typeOid)) return "json";
  return "string";
}

/** numeric(p, s) with p <= 15: every value's text survives a double. */
function exactNumeric(typeMod: number): boolean {
  if (typeMod < 4) return false; // unconstrained
  return ((typeMod - 4) >> 16) <= EXACT_DOUBLE_DIGITS;
}

function celName(kind: ValueKind): string {
  switch (kind) {
    case "timestamp":
      return TIMESTAMP;
    case "json":
      return "dyn";
    default:
      return kind;
  }
}

/**
 * The text each timestamp read from PostgreSQL came from: a CEL timestamp is
 * a Date (milliseconds), so a value an expression passes through unchanged
 * is written back with its microseconds.
 */
const timestampTexts = new WeakMap<Date, string>();

/** A value PostgreSQL's text form could not be read as its CEL type. */
export class ValueError extends Error {}

/** Reads the text of a value (never null) as `type` describes. */
export function readValue(text: string, type: CelColumnType): unknown {
  if (!type.list) return readScalar(text, type.kind);
  return parseArrayLiteral(text).map((e) => e === null ? null : readScalar(e, type.kind));
}

function readScalar(text: string, kind: ValueKind): unknown {
  switch (kind) {
    case "int":
      // Up to 15 characters the number is exact as a double, and converting it is faster.
      return text.length <= 15 ? BigInt(+text) : BigInt(text);
    case "double":
      return Number(text);
    case "bool":
      return text === "t" || text === "true";
    case "bytes":
      return readBytea(text);
    case "timestamp":
      return readTimestamp(text);
    case "json":
      return JSON.parse(text);
    default:
      return text;
  }
}

function readBytea(text: string): Uint8Array {
  if (!text.startsWith("\\x")) {
    throw new ValueError(`bytea not in hex format: ${text.slice(0, 20)}`);
  }
  const out = new Uint8Array((text.length - 2) >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 + 2 * i, 2), 16);
  return out;
}

const TIMESTAMP_TEXT =
  /^(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/;

/** Reads DateStyle ISO text (`2024-05-01 12:00:00.123456+00`, a date, or without zone as UTC). */
export function readTimestamp(text: string): Date {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m) {
    throw new ValueError(`timestamp ${text} has no CEL timestamp (infinity, or out of range)`);
  }
  let year = Number(m[1]);
  if (m[12]) year = 1 - year;
  const d = new Date(0);
  d.setUTCFullYear(year, Number(m[2]) - 1, Number(m[3]));
  const fraction = m[7] ? Number(m[7].padEnd(3, "0").slice(0, 3)) : 0;
  d.setUTCHours(Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0), fraction);
  let ms = d.getTime();
  if (m[8]) {
    const offset = Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0);
    ms -= (m[8] === "-" ? -offset : offset) * 1000;
  }
  const date = new Date(ms);
  timestampTexts.set(date, text);
  return date;
}

/** Parses a one-dimensional array literal (`{a,"b c",NULL}`) into its element texts. */
export function parseArrayLiteral(text: string): (string | null)[] {
  if (text.startsWith("[")) text = text.slice(text.indexOf("=") + 1); // explicit bounds
  if (text === "{}") return [];
  if (text[0] !== "{" || text[text.length - 1] !== "}" || text[1] === "{") {
    throw new ValueError(`only one-dimensional arrays are read, not ${text.slice(0, 40)}`);
  }
  const out: (string | null)[] = [];
  let i = 1;
  while (i < text.length) {
    if (text[i] === '"') {
      let value = "";
      i++;
      while (text[i] !== '"') {
        if (text[i] === "\\") i++;
        value += text[i++];
      }
      out.push(value);
      i++;
    } else {
      let end = i;
      while (text[end] !== "," && text[end] !== "}") end++;
      const raw = text.slice(i, end);
      out.push(raw === "NULL" ? null : raw);
      i = end;
    }
    i++; // the comma or the closing brace
  }
  return out;
}

/**
 * Writes a CEL result as PostgreSQL text for a column of type `targetType`
 * (`format_type`, e.g. `integer[]`): lists for an array column as an array
 * literal, other lists and maps as JSON; null as SQL NULL.
 */
export function writeValue(value: unknown, targetType: string): string | null {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
      return value;
    case "bigint":
      return String(value);
    case "number":
      return Number.isNaN(value) ? "NaN" : String(value);
    case "boolean":
      return value ? "true" : "false";
  }
  if (value instanceof Date) return timestampTexts.get(value) ?? value.toISOString();
  if (value instanceof Uint8Array) return byteaText(value);
  if (Array.isArray(value) && targetType.endsWith("[]")) {
    const element = targetType.slice(0, -2);
    return `{${value.map((v) => arrayElement(writeValue(v, element))).join(",")}}`;
  }
  if (isDuration(value)) return `${value.seconds} seconds ${value.nanos / 1000} microseconds`;
  if (isUnsigned(value)) return String(value.value);
  return JSON.stringify(jsonable(value));
}

function arrayElement(text: string | null): string {
  return text === null ? "NULL" : `"${text.replace(/["\\]/g, "\\$&")}"`;
}

function byteaText(bytes: Uint8Array): string {
  let out = "\\x";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function isDuration(v: unknown): v is { seconds: bigint; nanos: number } {
  return typeof v === "object" && v !== null && v.constructor?.name === "Duration";
}

function isUnsigned(v: unknown): v is { value: bigint } {
  return typeof v === "object" && v !== null && v.constructor?.name === "UnsignedInt";
}

/** A CEL value as plain JSON data (BigInt as number, Map as object, bytes as hex text). */
function jsonable(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return Number(value);
  if (typeof value !== "object") return value;
  if (value instanceof Date || value instanceof Uint8Array || isDuration(value)) {
    return writeValue(value, "text");
  }
  if (isUnsigned(value)) return Number(value.value);
  if (Array.isArray(value)) return value.map(jsonable);
  const entries = value instanceof Map ? [...value] : Object.entries(value);
  return Object.fromEntries(entries.map(([k, v]) => [String(k), jsonable(v)]));
}
