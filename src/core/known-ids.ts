/**
 * A set of chunk ids shared by the threads of one backup (on a SharedArrayBuffer), so a chunk
 * is encoded and stored once even when two workers meet it at the same moment: the first to
 * claim it stores it, the others only reference it. Keys are the first 8 bytes of the id in an
 * open-addressing table; a false match (2^-64 per pair) cannot lose data, because the vault
 * refuses to commit a point whose chunks it does not hold by their full ids.
 */
export type Claim = 'new' | 'known' | 'full';

const MAX_PROBES = 64;

export class SharedIdSet {
  private readonly table: BigInt64Array;
  private readonly mask: number;

  /** A table for about `expected` ids (at most a half-full table keeps probes short). */
  static create(expected: number, maxSlots = 1 << 26): SharedIdSet {
    let slots = 1024;
    while (slots < expected * 2 && slots < maxSlots) slots *= 2;
    return new SharedIdSet(new SharedArrayBuffer(slots * 8));
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.table = new BigInt64Array(buffer);
    const slots = this.table.length;
    if (slots === 0 || (slots & (slots - 1)) !== 0) throw new RangeError('the id table needs a power-of-two number of slots');
    this.mask = slots - 1;
  }

  /** Whether `id` was claimed; a full table answers false (the caller then stores it again). */
  has(id: Uint8Array): boolean {
    const view = new DataView(id.buffer, id.byteOffset, 8);
    let key = view.getBigInt64(0, true);
    if (key === 0n) key = 1n;
    let slot = view.getUint32(0, true) & this.mask;
    for (let probe = 0; probe < MAX_PROBES; probe++) {
      const seen = Atomics.load(this.table, slot);
      if (seen === key) return true;
      if (seen === 0n) return false;
      slot = (slot + 1) & this.mask;
    }
    return false;
  }

  /** `has` for an id in hexadecimal, as manifests and caches hold them. */
  hasHex(hex: string): boolean {
    return this.has(Buffer.from(hex.slice(0, 16), 'hex'));
  }

  /**
   * Adds `id` if absent. 'new': the caller is the first and must store the chunk; 'known':
   * it is stored (or being stored) already; 'full': the table cannot tell, store it anyway.
   */
  claim(id: Uint8Array): Claim {
    const view = new DataView(id.buffer, id.byteOffset, 8);
    let key = view.getBigInt64(0, true);
    if (key === 0n) key = 1n; // 0 marks an empty slot
    let slot = view.getUint32(0, true) & this.mask;
    for (let probe = 0; probe < MAX_PROBES; probe++) {
      const seen = Atomics.compareExchange(this.table, slot, 0n, key);
      if (seen === 0n) return 'new';
      if (seen === key) return 'known';
      slot = (slot + 1) & this.mask;
    }
    return 'full';
  }
}
