/** What `GET /v1/cluster` answers (`coffre server status --json`): the shape shared by the vault and its clients. */
export interface ClusterNode { id: string; url: string; startedAt: string; heartbeat: string; live: boolean; self: boolean }
export interface ClusterLease { name: string; holder: string; holderUrl: string | null; expiresAt: string; acquiredAt: string }
export interface ClusterStatus {
  node: { id: string; url: string };
  catalog: { engine: 'sqlite' | 'postgresql'; schemaVersion: number; codeSchemaVersion: number; location: string };
  nodes: ClusterNode[];
  leases: ClusterLease[];
}
