/** The database part of a connection URL: read it, or make the same URL for another database. */
import { parseConnInfo } from "./conninfo.ts";

/**
 * `url` naming database `database` instead of its own (or none): hosts,
 * user, password and every parameter stay as they are; a `dbname` parameter
 * is taken out. Expects a URL {@link parseConnInfo} accepts.
 */
export function withDatabase(url: string, database: string): string {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(url)![0];
  const rest = url.slice(scheme.length);
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const q = rest.indexOf("?", authority.length);
  const params = q < 0 ? [] : rest.slice(q + 1).split("&").filter((pair) => {
    const name = pair.slice(0, pair.includes("=") ? pair.indexOf("=") : pair.length);
    return pair !== "" && safeDecode(name) !== "dbname";
  });
  const query = params.length ? `?${params.join("&")}` : "";
  return `${scheme}${authority}/${encodeURIComponent(database)}${query}`;
}

/** The database `url` names (path or `dbname`, else `fallback`), environment defaults aside. */
export function databaseOf(url: string, fallback: string): string {
  return parseConnInfo(url, {}).dbname ?? fallback;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
