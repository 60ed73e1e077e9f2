/**
 * The agent's local control socket: how `coffre vm backup` asks a running `coffre agent run`
 * to do the backup instead of starting the engine in a fresh process (issue 16: Node.js start-up
 * and the engine's modules were a third of an incremental's time; the resident agent also keeps
 * its buffers and its connection to the vault warm).
 *
 * A Unix socket in the agent folder, mode 0600: only the agent folder's owner (and root) can
 * connect, so the file's permission is the authentication, as for the agent's keys beside it.
 * One request per connection, newline-delimited JSON both ways: the request, then any number of
 * progress lines, then exactly one final line (`result`, `error` or `declined`).
 *
 * This module is loaded by the CLI's fast path: it imports nothing but node:path.
 */
import { join } from 'node:path';
import type { JobInfo } from '../../core/api.js';
import type { VmBackupResult } from '../vm/vm-backup.js';

/** Bumped when a message changes meaning; an agent answers `declined` to a version it does not speak. */
export const CONTROL_VERSION = 1;

export const controlSocketPath = (agentDir: string): string => join(agentDir, 'agent.sock');

/**
 * The longest Unix socket path Linux accepts (sun_path is 108 bytes with its NUL). A longer
 * agent folder has no control socket: commands then run in their own process, as without agent.
 */
export const MAX_SOCKET_PATH = 107;

export interface VmBackupRequest {
  v: number;
  op: 'vm-backup';
  name: string;
  json: boolean;
  /** As typed on the command line: the agent checks them with the CLI's own parsers. */
  retainUntil?: string;
  scriptTimeout?: string;
  /** Whether the caller draws a progress bar (progress lines are sent only then). */
  progress: boolean;
}

export type ControlRequest = VmBackupRequest;

/** The counters a progress bar draws. */
export interface ProgressCounters { bytesScanned: number; bytesNew: number; bytesUploaded: number; filesScanned: number; filesChanged: number; bytesTotal: number; filesTotal: number }

/** What `coffre vm backup` prints of a backup besides its job. */
export type VmBackupShown = Pick<VmBackupResult, 'point' | 'consistency' | 'disks' | 'notes' | 'snapshot'>;

export type ControlReply =
  | { type: 'progress'; counters: ProgressCounters }
  /** The backup's job and what the command prints of it (the CLI renders both paths alike). */
  | { type: 'result'; job: JobInfo; backup: VmBackupShown }
  /** A failure as the in-process command reports it: a CoffreError's code, or null for an unexpected error. */
  | { type: 'error'; code: string | null; message: string }
  /** The agent will not run this one (e.g. an argument its parser rejects): the command runs in its own process. */
  | { type: 'declined'; reason: string };
