/** Keeps passwords out of anything printed. */

/** Replaces the password of a postgres URL with `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    u.searchParams.forEach((_, k) => {
      if (k.toLowerCase() === "password") u.searchParams.set(k, "***");
    });
    return u.toString();
  } catch {
    return url.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@").replace(
      /password=[^&\s]*/gi,
      "password=***",
    );
  }
}

/** Removes every password of `urls` from `text` (for error messages from drivers). */
export function redactText(text: string, urls: string[]): string {
  let out = text;
  for (const url of urls) {
    let password = "";
    try {
      password = decodeURIComponent(new URL(url).password);
    } catch {
      continue;
    }
    if (password.length >= 3) out = out.replaceAll(password, "***");
    out = out.replaceAll(url, redactUrl(url));
  }
  return out;
}
