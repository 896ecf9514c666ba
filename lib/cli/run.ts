/** `kvsz run` (placeholder until implemented). */
import { type Command, CONFIG_HELP, CONFIG_OPTION } from "./command.ts";

export const runCommand: Command = {
  name: "run",
  summary: "run",
  help: `Usage: kvsz run [--config FILE]\n\n${CONFIG_HELP}`,
  options: { ...CONFIG_OPTION },
  run() {
    return Promise.resolve(1);
  },
};
