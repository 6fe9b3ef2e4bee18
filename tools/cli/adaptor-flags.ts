// `carvq compress` adaptor flags: --adaptor, --adaptor-bpp, --adaptor-precision, --adaptor-epochs,
// their help text, parsing into AdaptorOptions (one-line errors), and the training progress bar.
import type cliProgress from "cli-progress";
import { choiceOption, intOption, quoted, usageError } from "./args.ts";
import { DEFAULT_ADAPTOR_BPP, parseAdaptorSpec } from "../adaptor/sizing.ts";
import { DEFAULT_ADAPTOR_OPTIONS, type AdaptorEvents, type AdaptorOptions } from "../adaptor/step.ts";
import type { TrainProgress } from "../adaptor/train.ts";
import { RVQ_METHOD } from "../quant/methods.ts";
import { stderrBar } from "../progress.ts";

export const ADAPTOR_HELP = `  --adaptor A          carvq: corrective adaptor gamma(t) = MLP(sigma0[t]) added to each decoded row
                       (blob format v1.2): none (default); paper (16 -> 384 -> 512 -> n); auto (sized
                       to --adaptor-bpp, none if that cannot hold one); or widths m0,m1,... (e.g.
                       8,64,128). Trained on the RVQ residual; kept only if it lowers the table's error
  --adaptor-bpp X      auto: the adaptor's budget in bits per parameter (default ${DEFAULT_ADAPTOR_BPP})
  --adaptor-precision P  int8 (default; FP16 scale per row / output channel) or fp16
  --adaptor-epochs N   most training epochs (default 0: auto, enough for about 3,000 steps, 16 to
                       3,000 epochs, fewer above 16 when that would exceed 1.6e13 flops); training
                       stops early when the loss stops improving`;

export const ADAPTOR_FLAGS = {
  adaptor: { type: "string" },
  "adaptor-bpp": { type: "string" },
  "adaptor-precision": { type: "string" },
  "adaptor-epochs": { type: "string" },
} as const;

type AdaptorValues = { adaptor?: string; "adaptor-bpp"?: string; "adaptor-precision"?: string; "adaptor-epochs"?: string };

/** AdaptorOptions from the flags; refuses bad values and combinations in one line. */
export function parseAdaptorFlags(command: string, values: AdaptorValues, method: string, searching: boolean): AdaptorOptions {
  const D = DEFAULT_ADAPTOR_OPTIONS;
  let adaptor = D.adaptor;
  if (values.adaptor !== undefined) {
    const spec = parseAdaptorSpec(values.adaptor);
    if (typeof spec === "object" && "error" in spec) throw usageError(command, `--adaptor ${spec.error}`);
    adaptor = spec;
  }
  let adaptorBpp = D.adaptorBpp;
  const rawBpp = values["adaptor-bpp"];
  if (rawBpp !== undefined) {
    adaptorBpp = /^\s*(\d+\.?\d*|\.\d+)(e-?\d+)?\s*$/i.test(rawBpp) ? Number(rawBpp) : NaN;
    if (!(adaptorBpp > 0 && adaptorBpp <= 64))
      throw usageError(command, `--adaptor-bpp must be a number above 0 and at most 64, got ${quoted(rawBpp)}`);
    if (adaptor !== "auto")
      throw usageError(command, `--adaptor-bpp sizes --adaptor auto; it means nothing with --adaptor ${values.adaptor ?? "none"}`);
  }
  const adaptorPrecision = choiceOption(command, "adaptor-precision", values["adaptor-precision"], D.adaptorPrecision, [
    "int8",
    "fp16",
  ] as const);
  const adaptorEpochs = intOption(command, "adaptor-epochs", values["adaptor-epochs"], D.adaptorEpochs, 0, 100000);
  if (adaptor !== "none" && method !== RVQ_METHOD)
    throw usageError(command, `--adaptor needs --method carvq (an adaptor corrects an RVQ table), got --method ${method}`);
  if (adaptor !== "none" && searching)
    throw usageError(command, `--adaptor cannot be combined with --target-bpp or --target (the search does not budget an adaptor)`);
  return { adaptor, adaptorBpp, adaptorPrecision, adaptorEpochs };
}

/** Adaptor notes to stderr and a training bar (epoch, step, loss) that replaces `before` when training starts. */
export function adaptorEvents(note: (message: string) => void, before: { stop(): void }): AdaptorEvents & { stop(): void } {
  let bar: cliProgress.SingleBar | null = null;
  return {
    note: (message) => {
      before.stop();
      bar?.stop();
      bar = null;
      note(message);
    },
    training: (p: TrainProgress) => {
      if (bar === null) {
        before.stop();
        bar = stderrBar(
          "training adaptor [{bar}] {percentage}% | epoch {epoch}/{epochs} | step {value}/{total} | L1 {loss} | {duration_formatted} elapsed, eta {eta_formatted}",
        );
        bar.start(p.steps, 0, { epoch: 1, epochs: p.epochs, loss: "-" });
      }
      bar.update(p.step, { epoch: p.epoch + 1, epochs: p.epochs, loss: p.loss.toFixed(4) });
    },
    stop: () => {
      bar?.stop();
      bar = null;
    },
  };
}
