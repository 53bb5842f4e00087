// The app's own tables, as a StudioVault app would declare them with Drizzle (seed schema, Phase 1).
// Only what the test routes touch.
import { integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const projects = sqliteTable("projects", {
  id: text("id").primaryKey(),
  branchId: text("branch_id").notNull(),
  clientId: text("client_id").notNull(),
  status: text("status").notNull(),
  startDate: integer("start_date"),
  detailsJson: text("details_json"),
  activatedAt: integer("activated_at"),
  createdAt: integer("created_at"),
  version: integer("version").default(1),
});

export const mediaObjects = sqliteTable("media_objects", {
  id: text("id").primaryKey(),
  projectId: text("project_id").notNull(),
  branchId: text("branch_id").notNull(),
  path: text("path").notNull(),
  fileType: text("file_type"),
  sizeBytes: integer("size_bytes").notNull(),
  watermarkState: text("watermark_state"),
  uploadedAt: integer("uploaded_at"),
  version: integer("version").default(1),
});
