/**
 * Entry-point runner shared by the CLIs: runs an effect/cli command on the process arguments. Command-line mistakes
 * (unknown flag, missing value) have already been printed with the usage by effect/cli; they exit 2 without a trace.
 * Anything else reaching here is a bug and is reported as such.
 */
import { NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit, Fiber, type Scope } from "effect"
import { CliError, Command } from "effect/cli"
import { isUserError, reportUserError, type UserError } from "../errors.ts"

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

/** A user error (bad config, run dir, data) is printed as one paragraph and sets the exit code; anything else is a bug. */
export const reportingUserErrors = <A, R>(program: Effect.Effect<A, unknown, R>): Effect.Effect<A | void, never, R> =>
  Effect.catch(program, (error) => (isUserError(error) ? Effect.sync(() => reportUserError(error as UserError)) : Effect.die(error)))

/** What runs under Ctrl-C handling: `run` interrupts the program it is given when the first signal arrives. */
export interface SignalStop {
  /** Runs `program` in a fiber of its own, which the first Ctrl-C or SIGTERM interrupts (its finalizers run). */
  readonly run: <A, E, R>(program: Effect.Effect<A, E, R>) => Effect.Effect<Exit.Exit<A, E>, never, R>
  /** Whether a signal has arrived (a grid stops starting runs then). */
  readonly signalled: () => boolean
}

/**
 * Ctrl-C handling for long runs, for as long as the scope lasts: the first SIGINT (or SIGTERM, as sent by `timeout`
 * and job schedulers) interrupts the running program at its next step boundary or evaluation batch, and its
 * finalizers write the checkpoint; a second one exits at once with 130.
 */
export const signalStop: Effect.Effect<SignalStop, never, Scope.Scope> = Effect.gen(function* () {
  let signalled = false
  let current: Fiber.Fiber<unknown, unknown> | undefined
  const onSignal = () => {
    if (signalled) process.exit(130)
    signalled = true
    process.stderr.write("\nstopping after this step or evaluation batch (Ctrl-C again to quit without a checkpoint)…\n")
    current?.interruptUnsafe()
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )
  const run = <A, E, R>(program: Effect.Effect<A, E, R>) =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(program)
      current = fiber
      if (signalled) fiber.interruptUnsafe()
      const exit = yield* Fiber.await(fiber)
      current = undefined
      return exit
    })
  return { run, signalled: () => signalled }
})

/** The exit code of a run's fiber that ended by interruption (Ctrl-C / SIGTERM): 130, as a shell reports SIGINT. */
export const isInterruption = <A, E>(exit: Exit.Exit<A, E>): boolean => Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
