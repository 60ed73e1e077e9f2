/** Child process of startS3 (object-servers.ts): fauxqs's S3 service on a free loopback port. */
import { buildApp } from 'fauxqs';

// startFauxqs() would listen on every interface; the tests need loopback only.
const app = buildApp({ logger: false });
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(`s3 listening on ${typeof address === 'object' && address ? address.port : 0}\n`);
const stop = () => { void app.close().then(() => process.exit(0)); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
