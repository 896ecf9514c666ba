/**
 * The targets of issue 16 (item 5, the upgrade) against what the `upgrade`
 * scenario measured, one line each: met, NOT MET, or not measured (and why).
 */
import { fmt } from "../util.ts";

/** What the scenario measured (null: not reached). */
export interface UpgradeRun {
  /** Client transactions/s achieved on the source before the switchover. */
  loadTps: number | null;
  /** Write downtime as the client saw it, seconds. */
  clientDowntime: number | null;
  /** The downtime `kvsz switchover` printed, seconds. */
  switchoverDowntime: number | null;
  /** Acknowledged source writes missing at the destination (orders or history rows). */
  lost: number | null;
  acked: number | null;
  /** Sequences (and identity values the client got) not ahead at the destination. */
  sequencesBehind: string[] | null;
  /** `kvsz verify` right after the switchover: exit 0. */
  verifyEqual: boolean | null;
  /** `kvsz verify` after a row was changed at the destination: exit 1, the key named. */
  tamperFound: boolean | null;
  tamperKey: string;
  /** Start → every table copied, streaming and the schema complete (kvsz / native), seconds. */
  kvszCopySeconds: number | null;
  nativeCopySeconds: number | null;
}

/** The target lines of the scenario. */
export function upgradeTargetLines(run: UpgradeRun, rate: number): string[] {
  const lines: string[] = [];
  const line = (ok: boolean | null, what: string, figure: string) =>
    lines.push(`- ${ok === null ? "not measured" : ok ? "met" : "NOT MET"}: ${what}: ${figure}`);
  line(
    run.clientDowntime === null ? null : run.clientDowntime < 2,
    `write downtime seen by the client under 2 s under a live load of about ${rate} transactions/s`,
    run.clientDowntime === null
      ? "not reached"
      : `${run.clientDowntime.toFixed(2)} s at ${
        fmt(run.loadTps)
      } transactions/s (switchover printed ${fmt(run.switchoverDowntime, 2)} s)`,
  );
  const proofs = [run.lost, run.sequencesBehind, run.verifyEqual, run.tamperFound];
  const reached = proofs.every((p) => p !== null);
  line(
    reached
      ? run.lost === 0 && run.sequencesBehind!.length === 0 && run.verifyEqual! &&
        run.tamperFound!
      : null,
    "no acknowledged write lost, every sequence ahead, verify equal, a row changed behind kvsz's back found and named",
    [
      run.lost === null
        ? "acknowledged writes not checked"
        : `${fmt(run.lost)} of ${fmt(run.acked)} acknowledged source writes missing`,
      run.sequencesBehind === null
        ? "sequences not checked"
        : run.sequencesBehind.length === 0
        ? "every sequence ahead"
        : `behind: ${run.sequencesBehind.join(", ")}`,
      run.verifyEqual === null
        ? "verify not run"
        : `verify ${run.verifyEqual ? "equal" : "NOT equal"}`,
      run.tamperFound === null
        ? "tampered row not checked"
        : `changed row ${run.tamperKey} ${
          run.tamperFound ? "named by verify" : "NOT named by verify"
        }`,
    ].join("; "),
  );
  const ratio = run.kvszCopySeconds !== null && run.nativeCopySeconds !== null
    ? run.nativeCopySeconds / run.kvszCopySeconds
    : null;
  line(
    ratio === null ? null : ratio >= 1,
    "initial copy of the whole database (schema included) at least as fast as native logical replication",
    ratio === null
      ? "not reached"
      : `kvsz ${fmt(run.kvszCopySeconds, 2)} s, native ${fmt(run.nativeCopySeconds, 2)} s: kvsz ${
        ratio.toFixed(2)
      }× native's speed`,
  );
  return ["Targets of issue 16, item 5 (upgrade scenario):", ...lines];
}
