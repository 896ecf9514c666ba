/** Dispatches `kvsz <subcommand> [flags]` and turns errors into exit codes. */
import { type Command, EXIT_FAILURE, EXIT_USAGE, parseFlags, UsageError } from "./command.ts";
import { ConfigError } from "../config/errors.ts";
import { versionCommand } from "./version.ts";
import { validateCommand } from "./validate.ts";
import { verifyCommand } from "./verify.ts";
import { statusCommand } from "./status.ts";
import { runCommand } from "./run.ts";
import { dropCommand } from "./drop.ts";
import { switchoverCommand } from "./switchover.ts";
import { demoCommand } from "./demo.ts";

/** Every subcommand, in the order `kvsz help` lists them. */
export const COMMANDS: Command[] = [
  runCommand,
  statusCommand,
  validateCommand,
  verifyCommand,
  dropCommand,
  switchoverCommand,
  demoCommand,
  versionCommand,
];

/** Top-level usage text. */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length), 4) + 2;
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
  return [
    "Usage: kvsz <command> [flags]",
    "",
    "kvsz streams changes from many source PostgreSQL databases into one destination.",
    "",
    "Commands:",
    ...lines,
    `  ${"help".padEnd(width)}show this help, or a command's help: kvsz help <command>`,
    "",
    "Run `kvsz <command> --help` for a command's flags.",
  ].join("\n");
}

/** Runs kvsz with `args` and returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" ? rest[0] : undefined;
    const cmd = topic ? COMMANDS.find((c) => c.name === topic) : undefined;
    if (topic && !cmd) return usageError(`unknown command "${topic}"`, usage());
    console.log(cmd ? cmd.help : usage());
    return 0;
  }
  if (name === "--version" || name === "-V") return versionCommand.run({}, []);
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) return usageError(`unknown command "${name}"`, usage());
  try {
    const { flags, positionals } = parseFlags(cmd, rest);
    if (flags.help) {
      console.log(cmd.help);
      return 0;
    }
    return await cmd.run(flags, positionals);
  } catch (e) {
    if (e instanceof UsageError) return usageError(e.message, cmd.help);
    if (e instanceof ConfigError) {
      console.error(e.message);
      return EXIT_USAGE;
    }
    console.error(`kvsz ${cmd.name}: ${(e as Error).message ?? e}`);
    return EXIT_FAILURE;
  }
}

function usageError(message: string, help: string): number {
  console.error(`kvsz: ${message}`);
  console.error(help);
  return EXIT_USAGE;
}
