/**
 * The server's ErrorResponse, read by kvsz itself where it reads protocol
 * bytes off a socket (the driver loses some of them: after a COPY's input
 * has ended, or when the server closes the connection right after).
 */

/** Protocol message type of an ErrorResponse. */
export const ERROR_RESPONSE = 0x45; // 'E'

/**
 * An error sent by the server: its message (and detail) and SQLSTATE `code`,
 * and the fields that say where (named as npm:postgres names them).
 */
export class ServerError extends Error {
  /** CONTEXT, e.g. `COPY t, line 2, column n: "5000000000"`. */
  where?: string;
  column_name?: string;
  constraint_name?: string;

  constructor(message: string, readonly code: string | undefined) {
    super(message);
    this.name = "ServerError";
  }
}

/** The fields of an ErrorResponse (or NoticeResponse) body, by their one-letter codes. */
export function errorFields(body: Uint8Array): Map<string, string> {
  const fields = new Map<string, string>();
  const text = new TextDecoder();
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    let end = body.indexOf(0, i + 1);
    if (end < 0) end = body.length;
    fields.set(String.fromCharCode(body[i]), text.decode(body.subarray(i + 1, end)));
    i = end + 1;
  }
  return fields;
}

/** Parses an ErrorResponse body (the fields after type and length). */
export function parseErrorResponse(body: Uint8Array): ServerError {
  const fields = errorFields(body);
  const detail = fields.get("D");
  const error = new ServerError(
    `${fields.get("M") ?? "server error"}${detail ? ` (${detail})` : ""}`,
    fields.get("C"),
  );
  error.where = fields.get("W");
  error.column_name = fields.get("c");
  error.constraint_name = fields.get("n");
  return error;
}
