/** Reading PostgreSQL's errors: the SQLSTATE and the fields a server error carries. */

/** The fields of a server error kvsz reads (npm:postgres's and kvsz's own names). */
export interface ServerErrorFields {
  code?: string;
  message?: string;
  detail?: string;
  where?: string;
  severity?: string;
  schema_name?: string;
  table_name?: string;
  column_name?: string;
}

/** The error's fields when it carries any, else an empty object (never throws). */
export function pgErrorFields(e: unknown): ServerErrorFields {
  return typeof e === "object" && e !== null ? e as ServerErrorFields : {};
}

/**
 * The SQLSTATE of a server error (`23505`), or the system error code of a
 * network one (`ECONNREFUSED`); undefined when it has none.
 */
export function errorCode(e: unknown): string | undefined {
  const code = pgErrorFields(e).code;
  return typeof code === "string" ? code : undefined;
}

/**
 * True for a server error no retry passes for the same data: class 54
 * (program limit exceeded) or a memory request over PostgreSQL's 1 GB.
 */
export function overServerLimit(e: unknown): boolean {
  const { code, message } = pgErrorFields(e);
  return code?.startsWith("54") === true ||
    (code === "XX000" && /invalid memory alloc request size/.test(String(message)));
}
