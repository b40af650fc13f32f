-- Built-in calendar (issue 5): bookable resources and appointments (models/calendar.py).
-- The partial unique index calendar_appointments_booked_slot is the database-level guard against
-- double booking; booking also locks the resource row (core/tools/calendar/builtin.py).
CREATE TABLE "calendar_resources" ("id" UUID NOT NULL PRIMARY KEY, "created_at" TIMESTAMPTZ NOT NULL, "updated_at" TIMESTAMPTZ NOT NULL, "project_id" UUID NOT NULL, "name" VARCHAR(200) NOT NULL, "kind" VARCHAR(16) NOT NULL, "description" TEXT NOT NULL, "working_hours_json" JSONB NOT NULL, "slot_minutes" INTEGER NOT NULL, "min_notice_minutes" INTEGER NOT NULL, "enabled" BOOLEAN NOT NULL, "external_ids_json" JSONB NOT NULL, FOREIGN KEY ("project_id") REFERENCES "projects" ("id") ON DELETE CASCADE);
CREATE INDEX "calendar_resources_created_at" ON "calendar_resources" ("created_at");
CREATE INDEX "calendar_resources_project_id" ON "calendar_resources" ("project_id");
CREATE INDEX "calendar_resources_external_ids_json" ON "calendar_resources" USING GIN ("external_ids_json");
CREATE UNIQUE INDEX "calendar_resources_project_id_name" ON "calendar_resources" ("project_id", "name");
CREATE TABLE "calendar_appointments" ("id" UUID NOT NULL PRIMARY KEY, "created_at" TIMESTAMPTZ NOT NULL, "updated_at" TIMESTAMPTZ NOT NULL, "project_id" UUID NOT NULL, "resource_id" UUID NOT NULL, "contact_id" UUID, "client_name" VARCHAR(300) NOT NULL, "phone_e164" VARCHAR(20), "starts_at" TIMESTAMPTZ NOT NULL, "ends_at" TIMESTAMPTZ NOT NULL, "status" VARCHAR(10) NOT NULL, "comment" TEXT NOT NULL, "call_id" UUID, "trace_id" VARCHAR(64), "cancelled_at" TIMESTAMPTZ, "cancel_reason" TEXT, "history_json" JSONB NOT NULL, "external_ids_json" JSONB NOT NULL, FOREIGN KEY ("project_id") REFERENCES "projects" ("id") ON DELETE CASCADE, FOREIGN KEY ("resource_id") REFERENCES "calendar_resources" ("id") ON DELETE CASCADE, FOREIGN KEY ("contact_id") REFERENCES "crm_contacts" ("id") ON DELETE SET NULL, FOREIGN KEY ("call_id") REFERENCES "calls" ("id") ON DELETE SET NULL, CHECK ("ends_at" > "starts_at"));
CREATE INDEX "calendar_appointments_created_at" ON "calendar_appointments" ("created_at");
CREATE INDEX "calendar_appointments_project_id" ON "calendar_appointments" ("project_id");
CREATE INDEX "calendar_appointments_contact_id" ON "calendar_appointments" ("contact_id");
CREATE INDEX "calendar_appointments_call_id" ON "calendar_appointments" ("call_id");
CREATE INDEX "calendar_appointments_external_ids_json" ON "calendar_appointments" USING GIN ("external_ids_json");
CREATE INDEX "calendar_appointments_resource_id_starts_at" ON "calendar_appointments" ("resource_id", "starts_at");
CREATE INDEX "calendar_appointments_project_id_starts_at" ON "calendar_appointments" ("project_id", "starts_at");
CREATE INDEX "calendar_appointments_project_id_phone_e164" ON "calendar_appointments" ("project_id", "phone_e164");
CREATE UNIQUE INDEX "calendar_appointments_booked_slot" ON "calendar_appointments" ("resource_id", "starts_at") WHERE status = 'booked';
