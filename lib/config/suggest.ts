/** "Did you mean" suggestions for misspelt keys and values. */

/** Largest edit distance at which a known word is still suggested. */
export const MAX_SUGGESTION_DISTANCE = 2;

/**
 * Edit distance between `a` and `b`: insertions, deletions, substitutions and
 * swaps of two neighbouring characters each count as one edit.
 */
export function editDistance(a: string, b: string): number {
  // d[i][j] = distance between the first i characters of a and the first j of b.
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push([i]);
    for (let j = 1; j <= b.length; j++) d[i].push(i === 0 ? j : 0);
  }
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The known word closest to `word` (ignoring case), if within
 * {@link MAX_SUGGESTION_DISTANCE}; else a known word that `word` abbreviates
 * (at least 3 characters, e.g. `warn` for `warning`).
 */
export function suggest(word: string, known: readonly string[]): string | undefined {
  const closest = closestWord(word, known);
  if (closest !== undefined || word.length < 3) return closest;
  return known.find((candidate) => candidate.toLowerCase().startsWith(word.toLowerCase()));
}

function closestWord(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
  for (const candidate of known) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** ` (did you mean "x"?)` when a known word is close to `word`, else an empty string. */
export function didYouMean(word: string, known: readonly string[]): string {
  const match = suggest(word, known);
  return match === undefined ? "" : ` (did you mean "${match}"?)`;
}
