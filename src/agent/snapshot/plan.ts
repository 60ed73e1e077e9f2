/**
 * Deciding, before anything is made, how each path will be read: which volumes it spans (its
 * own, the mounts below it, btrfs subvolumes nested in them), which of them get a snapshot and
 * which are read live, and where the walk then reads each folder from. Planning has no side
 * effects, so an impossible `--snapshot btrfs` fails before any script runs or snapshot exists.
 */
import { lstat } from 'node:fs/promises';
import { relative } from 'node:path';
import { CoffreError } from '../../core/errors.js';
import { encodeName } from '../../core/manifest.js';
import { excluder, rootName, type WalkRoot } from '../walk.js';
import type { SnapshotMethod, SnapshotMode, SnapshotRef, Snapshotter } from './snapshotter.js';
import { isWithin, mountOf, mountsBelow, realLivePath, type Mount } from './volumes.js';

export interface ReadPlan {
  roots: WalkRoot[];
  /** The snapshots to make, one per volume, in the order they were met. */
  snapshots: SnapshotRef[];
  /** Volumes that will be read live, and why no snapshot of them can be made. */
  live: { path: string; reason: string }[];
}

export interface PlanInput {
  paths: string[];
  mode: Exclude<SnapshotMode, 'none'>;
  excludes: string[];
  mounts: Mount[];
  snapshotters: Record<SnapshotMethod, Snapshotter>;
  /** Names the snapshot of each new volume. */
  nameFor: (n: number) => string;
  /** Mounts under these folders are Coffre's own (mounted snapshots of another run): never read. */
  ownMounts: string[];
}

/** Which methods may snapshot a file system of this type, tried in order (the `auto` mode). */
function candidates(mount: Mount): SnapshotMethod[] {
  if (mount.fsType === 'btrfs') return ['btrfs'];
  if (mount.fsType === 'zfs') return ['zfs'];
  return mount.source.startsWith('/dev/') ? ['lvm'] : [];
}

/** The '/'-joined path inside the point of a live path below a root, as the walk spells it. */
function pointKey(rootKey: string, rootLive: string, live: string): string {
  const rel = relative(rootLive, live);
  return rel === '' ? rootKey : [rootKey, ...rel.split('/').map((c) => encodeName(Buffer.from(c)))].join('/');
}

export async function planRead(input: PlanInput): Promise<ReadPlan> {
  const isExcluded = excluder(input.excludes);
  const byKey = new Map<string, SnapshotRef>();
  const plan: ReadPlan = { roots: [], snapshots: [], live: [] };

  for (const given of input.paths) {
    const rootLive = realLivePath(given);
    const rootKey = rootName(given);
    const grafts = new Map<string, string | null>();
    // A volume below an excluded folder is never read: it must neither be snapshotted nor lower the label.
    const excluded = (live: string) => {
      const parts = relative(rootLive, live).split('/');
      return parts.some((name, i) => isExcluded([rootKey, ...parts.slice(0, i + 1)].join('/'), name));
    };

    /** Plans one volume's part of the tree, from `live` down; returns where to read `live` from. */
    const region = async (live: string, explicit: SnapshotMethod | null): Promise<string> => {
      const mount = mountOf(live, input.mounts);
      const reasons: string[] = [];
      for (const method of explicit ? [explicit] : candidates(mount)) {
        const snapshotter = input.snapshotters[method];
        const probed = await snapshotter.probe(live, mount);
        if ('unavailable' in probed) {
          reasons.push(probed.unavailable);
          continue;
        }
        let ref = byKey.get(probed.key);
        if (!ref) {
          ref = { name: input.nameFor(plan.snapshots.length), volume: probed };
          byKey.set(probed.key, ref);
          plan.snapshots.push(ref);
        }
        for (const sub of (await snapshotter.nested?.(probed, live)) ?? []) {
          if (!excluded(sub)) grafts.set(pointKey(rootKey, rootLive, sub), await region(sub, null));
        }
        if (probed.method === 'btrfs' && probed.snapshotDir !== live && isWithin(probed.snapshotDir, live)) {
          grafts.set(pointKey(rootKey, rootLive, probed.snapshotDir), null);
        }
        return snapshotter.copyOf(ref, live);
      }
      const reason = explicit ? reasons.join('; ') : `${mount.fsType} on ${mount.source}: ${reasons.join('; ') || 'Coffre makes no snapshot of this kind of file system'}`;
      if (explicit) throw new CoffreError('SnapshotUnavailable', `cannot take a ${explicit} snapshot of ${given}: ${reason}; use --snapshot auto to read what cannot be snapshotted live`);
      plan.live.push({ path: live, reason });
      return live;
    };

    let isDir = false;
    try {
      isDir = (await lstat(rootLive)).isDirectory();
    } catch {
      // A path that does not exist is read as given: the walk says so, with the path the user gave.
      plan.roots.push({ read: given, record: given });
      continue;
    }
    const read = await region(rootLive, input.mode === 'auto' ? null : input.mode);
    if (isDir) {
      // Mounts below: shallowest first, so a deeper mount's graft wins over what a shallower one planned there.
      for (const m of mountsBelow(rootLive, input.mounts)) {
        if (input.ownMounts.some((own) => isWithin(m.mountPoint, own)) || excluded(m.mountPoint)) continue;
        grafts.set(pointKey(rootKey, rootLive, m.mountPoint), await region(m.mountPoint, null));
      }
    }
    plan.roots.push({ read, record: given, grafts });
  }
  return plan;
}
