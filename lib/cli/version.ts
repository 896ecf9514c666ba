/** `kvsz version`: prints the program version. */
import type { Command } from "./command.ts";
import { VERSION } from "../version.ts";

export const versionCommand: Command = {
  name: "version",
  summary: "print the kvsz version",
  help: "Usage: kvsz version\n\nPrints the kvsz version, the Deno runtime and the platform.",
  options: {},
  run() {
    console.log(`kvsz ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.os}-${Deno.build.arch})`);
    return Promise.resolve(0);
  },
};
