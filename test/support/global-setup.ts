import type { TestProject } from "vitest/node";
import { startOriginServer } from "./origin-server";

/** Starts the loopback origin once for the whole run and tells the workerd tests its port. */
export default async function setup(project: TestProject) {
  const { server, port } = await startOriginServer();
  project.provide("originPort", port);
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}

declare module "vitest" {
  export interface ProvidedContext {
    originPort: number;
  }
}
