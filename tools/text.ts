/** "1 row", "2 rows": a count with its noun in the right number (give `plural` when it is not noun + "s"). */
export function count(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
