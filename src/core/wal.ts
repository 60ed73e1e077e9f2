/**
 * PostgreSQL write-ahead log names and positions, as pure functions. A segment file is named
 * TTTTTTTTXXXXXXXXYYYYYYYY: timeline, then the segment number split in two ("log" and "seg"
 * parts, 2^32 bytes of WAL per log part). Positions (LSNs) are written "X/Y" in hexadecimal.
 * Segment numbers stay far below 2^53 (2^64 bytes / 1 MiB at the smallest segment size), so
 * they are plain numbers here; LSNs are bigints.
 */
import { CoffreError } from './errors.js';

export const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
export const HISTORY_NAME = /^([0-9A-F]{8})\.history$/;

export interface SegmentName { timeline: number; segNo: number }

const segmentsPerLog = (segSize: number) => 0x1_0000_0000 / segSize;

function checkSegSize(segSize: number): void {
  if (!Number.isInteger(segSize) || segSize < 1024 * 1024 || segSize > 1024 * 1024 * 1024 || (segSize & (segSize - 1)) !== 0) {
    throw new CoffreError('InvalidArgument', `WAL segment size ${segSize} is not a power of two from 1 MiB to 1 GiB`);
  }
}

export function parseSegmentName(name: string, segSize: number): SegmentName | null {
  checkSegSize(segSize);
  const m = SEGMENT_NAME.exec(name);
  if (!m) return null;
  const seg = parseInt(m[3]!, 16);
  if (seg >= segmentsPerLog(segSize)) return null;
  return { timeline: parseInt(m[1]!, 16), segNo: parseInt(m[2]!, 16) * segmentsPerLog(segSize) + seg };
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

export function segmentName(timeline: number, segNo: number, segSize: number): string {
  checkSegSize(segSize);
  const per = segmentsPerLog(segSize);
  return hex8(timeline) + hex8(Math.floor(segNo / per)) + hex8(segNo % per);
}

export function historyName(timeline: number): string {
  return `${hex8(timeline)}.history`;
}

export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new CoffreError('InvalidArgument', `${JSON.stringify(text)} is not a WAL position (X/Y in hexadecimal)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** The segment holding the byte at `lsn`. */
export function segmentOf(lsn: bigint, segSize: number): number {
  checkSegSize(segSize);
  return Number(lsn / BigInt(segSize));
}
