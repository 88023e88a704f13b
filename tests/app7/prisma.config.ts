// Prisma 7 reads the connection from here, not from the schema. Only `prisma generate` runs
// (offline, PRISMA_SCHEMA_ENGINE_BINARY set to any existing file: see generate.sh).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: process.env.PRISMA_SCHEMA ?? "prisma/legacy.prisma",
  datasource: { url: process.env.DATABASE_URL ?? "postgres://localhost/unused" },
});
