// The Prisma CLI offline: its WebAssembly schema engine through the pg driver adapter, so no
// native engine is downloaded (SPEC §6). PRISMA_SCHEMA selects the schema file, PRISMA_MIGRATIONS
// the migrations folder (tests/cli/prisma.rs sets both).
import path from "node:path";
import { defineConfig } from "prisma/config";
import { PrismaPg } from "@prisma/adapter-pg";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: process.env.PRISMA_SCHEMA ?? path.join("prisma", "legacy.prisma"),
  migrations: { path: process.env.PRISMA_MIGRATIONS ?? path.join("prisma", "migrations") },
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
});
