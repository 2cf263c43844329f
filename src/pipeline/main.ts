/**
 * Entry-point runner shared by the CLIs: runs an effect/cli command on the process arguments. Command-line mistakes
 * (unknown flag, missing value) have already been printed with the usage by effect/cli; they exit 2 without a trace.
 * Anything else reaching here is a bug and is reported as such.
 */
import { NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { CliError, Command } from "effect/cli"

export async function runMain<Name extends string, Input, E, R>(command: Command.Command<Name, Input, unknown, E, R>): Promise<void> {
  const exit = await Effect.runPromiseExit(
    command.pipe(Command.run({ version: "0.1.0" }), Effect.provide(NodeServices.layer)) as Effect.Effect<void, unknown, never>
  )
  if (Exit.isSuccess(exit)) return
  const error = Cause.squash(exit.cause)
  if (CliError.isCliError(error)) {
    process.exitCode = 2
    return
  }
  process.stderr.write(`internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exitCode = 1
}
