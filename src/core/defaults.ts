/** Defaults shared by the server and the CLI (kept apart so the CLI does not load the server to read them). */
export const DEFAULT_DATA_DIR = 'coffre-data';
export const DEFAULT_LISTEN = '127.0.0.1:7070';
export const ADMIN_TOKEN_FILE = 'admin.token';
