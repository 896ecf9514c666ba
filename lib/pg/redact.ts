/**
 * Keeps passwords out of anything printed. Works on the text of a URL, not on
 * its parse: a URL too broken to parse (a password that is not
 * percent-encoded) is redacted all the same.
 */

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const PASSWORD_PARAM = /([?&]password=)[^&\s]*/gi;

/**
 * Where the password of `url` is, as `[start, end)` offsets, or null: from the
 * first ':' after the scheme to the last '@' that ends the user information.
 */
function passwordSpan(url: string): [number, number] | null {
  const scheme = SCHEME.exec(url);
  if (!scheme) return null;
  const start = scheme[0].length;
  let at = url.lastIndexOf("@");
  // An '@' inside a parameter's value (…?application_name=a@b) is not the end of a password.
  const query = url.indexOf("?", start);
  if (query >= 0 && at > query && url.slice(query, at).includes("=")) {
    at = url.lastIndexOf("@", query);
  }
  if (at < start) return null;
  const colon = url.indexOf(":", start);
  if (colon < 0 || colon > at) return null;
  return [colon + 1, at];
}

/** Replaces the password of a postgres URL (and a `password=` parameter) with `***`. */
export function redactUrl(url: string): string {
  const span = passwordSpan(url);
  const out = span ? `${url.slice(0, span[0])}***${url.slice(span[1])}` : url;
  return out.replace(PASSWORD_PARAM, "$1***");
}

/** Every form of the passwords of `url` that may appear in text: as written and decoded. */
export function passwordsOf(url: string): string[] {
  const found: string[] = [];
  const span = passwordSpan(url);
  if (span) found.push(url.slice(span[0], span[1]));
  for (const m of url.matchAll(PASSWORD_PARAM)) {
    found.push(url.slice(m.index! + m[1].length, m.index! + m[0].length));
  }
  const all = new Set<string>();
  for (const p of found) {
    all.add(p);
    try {
      all.add(decodeURIComponent(p));
    } catch { /* not valid percent-encoding: only the raw form can appear */ }
  }
  return [...all].filter((p) => p.length >= 3);
}

/** Removes every password of `urls` from `text` (for error messages from drivers). */
export function redactText(text: string, urls: string[]): string {
  let out = text;
  for (const url of urls) {
    out = out.replaceAll(url, redactUrl(url));
    for (const password of passwordsOf(url)) out = out.replaceAll(password, "***");
  }
  return out;
}
