// The package ships no types; we declare only the functions Coffre calls.
declare module 'sodium-native' {
  export const crypto_aead_xchacha20poly1305_ietf_NPUBBYTES: number;
  export const crypto_aead_xchacha20poly1305_ietf_ABYTES: number;
  export const crypto_pwhash_ALG_ARGON2ID13: number;
  export function crypto_aead_xchacha20poly1305_ietf_encrypt(
    ciphertext: Uint8Array, message: Uint8Array, additionalData: Uint8Array | null,
    nsec: null, nonce: Uint8Array, key: Uint8Array): number;
  export function crypto_aead_xchacha20poly1305_ietf_decrypt(
    message: Uint8Array, nsec: null, ciphertext: Uint8Array, additionalData: Uint8Array | null,
    nonce: Uint8Array, key: Uint8Array): number;
  export function crypto_pwhash(
    output: Uint8Array, password: Uint8Array, salt: Uint8Array,
    opslimit: number, memlimit: number, algorithm: number): void;
  export function randombytes_buf(buffer: Uint8Array): void;
}
