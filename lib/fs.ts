/** File-system helpers shared by several stages. */

/** True when `path` exists (file or directory). */
export function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
