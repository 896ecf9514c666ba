/** `kvsz status` (placeholder until implemented). */
import { type Command, CONFIG_HELP, CONFIG_OPTION } from "./command.ts";

export const statusCommand: Command = {
  name: "status",
  summary: "status",
  help: `Usage: kvsz status [--config FILE]\n\n${CONFIG_HELP}`,
  options: { ...CONFIG_OPTION },
  run() {
    return Promise.resolve(1);
  },
};
