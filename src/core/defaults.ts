/** Defaults shared by the server and the CLI (kept apart so the CLI does not load the server to read them). */
export const DEFAULT_DATA_DIR = 'coffre-data';
export const DEFAULT_LISTEN = '127.0.0.1:7070';
/** Where a running server says where it listens and which certificate it serves, for the CLI beside it. */
export const SERVER_INFO_FILE = 'server.json';
export const ADMIN_TOKEN_FILE = 'admin.token';
