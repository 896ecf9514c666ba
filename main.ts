/** kvsz: change data capture from many PostgreSQL sources into one destination. */
import { main } from "./lib/cli/main.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
