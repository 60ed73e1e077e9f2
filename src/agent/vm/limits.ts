/**
 * The VM engine's numeric limits and defaults, apart from the modules that validate
 * configurations and manifests: the CLI builds its options from these without loading them.
 */
export const MIN_BLOCK = 64 * 1024;
export const MAX_BLOCK = 16 * 1024 * 1024;
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
export const DEFAULT_SCRIPT_TIMEOUT_SECONDS = 300;
export const DEFAULT_INSTANT_RESTORE_DAYS = 2;
