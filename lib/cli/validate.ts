/** `kvsz validate` (placeholder until implemented). */
import { type Command, CONFIG_HELP, CONFIG_OPTION } from "./command.ts";

export const validateCommand: Command = {
  name: "validate",
  summary: "validate",
  help: `Usage: kvsz validate [--config FILE]\n\n${CONFIG_HELP}`,
  options: { ...CONFIG_OPTION },
  run() {
    return Promise.resolve(1);
  },
};
