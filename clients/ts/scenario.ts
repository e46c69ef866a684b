// A phone day and a clinic day against a live moodtrack server, written as a React Native
// app would: every call goes through openapi-fetch, typed by openapi-typescript's schema.d.ts
// (generated from ../../openapi.yaml by run.sh, not committed). Each step checks its status and
// a value that shows the server did the work. Environment (set by run.sh):
//   MOODTRACK_URL     server root, e.g. http://127.0.0.1:8123
//   MOODTRACK_OUTBOX  the development outbox folder where sign-up emails are written
//   OPS_EMAIL/OPS_PASSWORD, DR_EMAIL/DR_PASSWORD  staff made with `moodtrack users create`
// Staff two-factor sign-in is required (run.sh sets MOODTRACK_REQUIRE_STAFF_2FA=true).
import { createHmac, randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import createClient from "openapi-fetch";
import type { Client } from "openapi-fetch";
import type { components, paths } from "./schema.d.ts";

type Schemas = components["schemas"];
type Json = "application/json" | "application/problem+json";
type Api = Client<paths, Json>;

const ROOT = need("MOODTRACK_URL");
const OUTBOX = need("MOODTRACK_OUTBOX");

function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

let steps = 0;
function check(condition: boolean, what: string, detail?: unknown): asserts condition {
  if (!condition) {
    const extra = detail === undefined ? "" : `: ${JSON.stringify(detail).slice(0, 600)}`;
    throw new Error(`FAILED: ${what}${extra}`);
  }
  steps += 1;
  console.log(`ok ${steps} - ${what}`);
}

/** The response's status is the one expected; returns the parsed body (never undefined). */
function expect<T>(
  result: { data?: T; error?: unknown; response: Response },
  status: number,
  what: string,
): T {
  check(result.response.status === status, `${what} -> ${status}`, {
    got: result.response.status,
    error: result.error,
  });
  return result.data as T;
}

function api(token?: string): Api {
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  return createClient<paths, Json>({ baseUrl: ROOT, headers });
}

function fhirApi(token: string): Client<paths, "application/fhir+json"> {
  return createClient<paths, "application/fhir+json">({
    baseUrl: ROOT,
    headers: { Authorization: `Bearer ${token}` },
  });
}

function etag(response: Response): string {
  const value = response.headers.get("ETag");
  check(value !== null && value.length > 0, "the response carries an ETag");
  return value;
}

/** Instants relative to midnight UTC three days ago, so every one is in the past. */
const DAY0 = Date.UTC(
  new Date().getUTCFullYear(),
  new Date().getUTCMonth(),
  new Date().getUTCDate() - 3,
);
function at(day: number, hhmm: string): string {
  const [h, m] = hhmm.split(":").map(Number);
  return new Date(DAY0 + day * 86_400_000 + (h * 60 + m) * 60_000)
    .toISOString()
    .replace(".000Z", "Z");
}

// --- TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s), what an authenticator app computes ---------

function base32(text: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of text.replace(/=+$/, "").toUpperCase()) {
    const index = alphabet.indexOf(ch);
    if (index < 0) throw new Error("secret is not base32");
    bits += index.toString(2).padStart(5, "0");
  }
  const bytes: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret: string, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}

// --- sign-in helpers -----------------------------------------------------------------------

async function waitForSignupCode(email: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    // The mail thread makes the folder with the first message: until then there is none.
    const names = existsSync(OUTBOX) ? readdirSync(OUTBOX) : [];
    for (const name of names
      .filter((n) => n.endsWith(".eml"))
      .sort()) {
      const text = readFileSync(join(OUTBOX, name), "utf8");
      const code = /code is ([A-Z0-9-]+)/.exec(text);
      if (text.includes(email) && code) return code[1];
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`no sign-up email for ${email} in ${OUTBOX} within 30 s`);
}

async function login(email: string, password: string) {
  return expect(
    await api().POST("/api/v1/auth/login", { body: { email, password } }),
    200,
    `login ${email}`,
  );
}

/** A staff sign-in as production requires it: enrol a second factor on first use, then log
 * in with the password and a code (`useRecovery`: one of the recovery codes instead). */
async function staffSignIn(email: string, password: string, useRecovery: boolean) {
  const first = await login(email, password);
  check("access_token" in first, "a staff account without 2FA gets an enrol-only token", first);
  check(first.second_factor_enrolment_required, "the token says enrolment is required");
  const blocked = await api(first.access_token).GET("/api/v1/me");
  expect(blocked, 403, "anything but enrolment before 2FA");
  const enrolled = expect(
    await api(first.access_token).POST("/api/v1/auth/2fa/enrol", { body: { password } }),
    200,
    "2FA enrol",
  );
  check(enrolled.otpauth_uri.startsWith("otpauth://totp/"), "an otpauth:// URI for the app");
  const step = Math.floor(Date.now() / 1000 / enrolled.period);
  const codes = expect(
    await api(first.access_token).POST("/api/v1/auth/2fa/confirm", {
      body: { code: totp(enrolled.secret, step) },
    }),
    200,
    "2FA confirm with the app's code",
  );
  check(codes.recovery_codes.length === 10, "ten recovery codes, shown once");
  const second = await login(email, password);
  check("mfa_token" in second && second.mfa_required, "login now asks for a code", second);
  // The code just used is refused again; the next step's code (allowed for clock drift) works.
  const code = useRecovery ? codes.recovery_codes[0] : totp(enrolled.secret, step + 1);
  const pair = expect(
    await api().POST("/api/v1/auth/2fa/verify", { body: { mfa_token: second.mfa_token, code } }),
    200,
    useRecovery ? "2FA verify with a recovery code" : "2FA verify with the next TOTP code",
  );
  check(!pair.second_factor_enrolment_required, "the full token pair");
  return pair;
}

// --- the phone's day -------------------------------------------------------------------------

const ANA = {
  email: `ana-${randomUUID().slice(0, 8)}@example.org`,
  password: "a long quiet evening walk",
};

async function phoneSignUp(): Promise<string> {
  const accepted = expect(
    await api().POST("/api/v1/auth/register", {
      body: { ...ANA, display_name: "Ana", timezone: "America/Chicago" },
    }),
    202,
    "register",
  );
  check(accepted.status === "confirmation_sent", "register says a code was sent");
  const code = await waitForSignupCode(ANA.email);
  const user = expect(
    await api().POST("/api/v1/auth/register/confirm", { body: { ...ANA, code } }),
    201,
    "confirm sign-up with the emailed code",
  );
  check(user.role === "patient" && user.email === ANA.email, "a patient account", user);
  const pair = await login(ANA.email, ANA.password);
  check("refresh_token" in pair, "a token pair", pair);
  const renewed = expect(
    await api().POST("/api/v1/auth/refresh", { body: { refresh_token: pair.refresh_token } }),
    200,
    "refresh",
  );
  check(renewed.refresh_token !== pair.refresh_token, "refresh rotates the refresh token");
  const me = expect(await api(renewed.access_token).GET("/api/v1/me"), 200, "GET /me");
  check(me.id === user.id, "the refreshed token is Ana's");
  return renewed.access_token;
}

async function phoneEntries(ana: Api): Promise<void> {
  const mine = { path: { patient_id: "me" } } as const;
  const entry: Schemas["MoodEntryIn"] = {
    id: randomUUID(),
    occurred_at: at(0, "21:30"),
    mood: 4,
    anxiety: 6,
    sleep_hours: 6.5,
    note: "tired",
  };
  const url = "/api/v1/patients/{patient_id}/mood-entries" as const;
  const made = expect(await ana.POST(url, { params: mine, body: entry }), 201, "log a mood");
  check(made.id === entry.id && made.mood === 4, "the entry keeps the phone's id", made);
  const replay = expect(await ana.POST(url, { params: mine, body: entry }), 200, "replay");
  check(replay.version === made.version, "the replay returns the stored record");

  const batch = expect(
    await ana.POST("/api/v1/patients/{patient_id}/mood-entries/batch", {
      params: mine,
      body: {
        entries: [
          { occurred_at: at(0, "08:00"), mood: 5 },
          { occurred_at: at(0, "20:00"), mood: 11 },
        ],
      },
    }),
    200,
    "offline batch",
  );
  check(
    batch.created === 1 && batch.failed === 1 && batch.results[1].status === 422,
    "one batch item stored, the out-of-range one fails alone",
    batch,
  );
  const stored = batch.results[0].entry;
  check(stored !== null && "id" in stored, "the batch result carries the stored entry");

  const one = "/api/v1/patients/{patient_id}/mood-entries/{entry_id}" as const;
  const read = await ana.GET(one, { params: { path: { patient_id: "me", entry_id: made.id } } });
  expect(read, 200, "read the entry");
  const patched = expect(
    await ana.PATCH(one, {
      params: {
        path: { patient_id: "me", entry_id: made.id },
        header: { "If-Match": etag(read.response) },
      },
      body: { note: "tired after work" },
    }),
    200,
    "PATCH the note with If-Match",
  );
  check(patched.note === "tired after work" && patched.version === made.version + 1, "patched");

  const other = await ana.GET(one, { params: { path: { patient_id: "me", entry_id: stored.id } } });
  expect(other, 200, "read the batch entry");
  expect(
    await ana.DELETE(one, {
      params: {
        path: { patient_id: "me", entry_id: stored.id },
        header: { "If-Match": etag(other.response) },
      },
    }),
    204,
    "DELETE with If-Match",
  );

  const changes = "/api/v1/patients/{patient_id}/mood-entries/changes" as const;
  const feed = expect(
    await ana.GET(changes, { params: { path: { patient_id: "me" }, query: { since: "0" } } }),
    200,
    "sync from the start",
  );
  check("has_more" in feed, "the sync feed shape", feed);
  const byId = new Map(feed.items.map((change) => [change.id, change]));
  check(byId.get(stored.id)?.deleted === true, "the deleted entry comes as a tombstone");
  check(byId.get(made.id)?.deleted === false, "the patched entry comes as a change");
  const again = expect(
    await ana.GET(changes, {
      params: { path: { patient_id: "me" }, query: { since: feed.next_cursor } },
    }),
    200,
    "sync again from next_cursor",
  );
  check(again.items.length === 0, "nothing new since the cursor", again);
}

async function phoneQuestionnaire(ana: Api): Promise<void> {
  const mine = { path: { patient_id: "me" } } as const;
  const phq9 = expect(
    await ana.POST("/api/v1/patients/{patient_id}/assessments", {
      params: mine,
      body: {
        instrument: "phq9",
        answers: [2, 2, 1, 2, 1, 1, 1, 0, 1],
        difficulty: 1,
        occurred_at: at(0, "21:35"),
      },
    }),
    201,
    "PHQ-9",
  );
  check(phq9.total === 11 && phq9.band === "moderate", "PHQ-9 total 11, moderate", phq9);
  check(phq9.flags.includes("self_harm_item_positive"), "item 9 flags self-harm");
  const due = expect(
    await ana.GET("/api/v1/patients/{patient_id}/due", { params: mine }),
    200,
    "due",
  );
  check(
    due.items.some((item) => item.kind === "daily_mood"),
    "daily mood is on the due list",
    due,
  );
  const trend = expect(
    await ana.GET("/api/v1/patients/{patient_id}/trends", {
      params: { path: { patient_id: "me" }, query: { metric: "mood", bucket: "day" } },
    }),
    200,
    "own mood trend",
  );
  check(trend.series.length === 1 && trend.series[0].n === 1, "one day with one entry", trend);
}

async function phoneExportAndErase(ana: Api, token: string, anaId: string): Promise<void> {
  const data = expect(await ana.GET("/api/v1/me/export"), 200, "export (JSON)");
  check(
    data.profile.id === anaId && data.mood_entries.length === 3,
    "the export holds Ana's data",
    data.counts,
  );
  check(
    data.alerts.some((a) => a.rule === "self_harm"),
    "and the self_harm alert her PHQ-9 raised",
  );
  const fhir = expect(
    await fhirApi(token).GET("/api/v1/me/export.fhir.json"),
    200,
    "export (FHIR)",
  );
  check(fhir.resourceType === "Bundle" && (fhir.entry ?? []).length > 0, "a FHIR Bundle");
  const log = expect(
    await ana.GET("/api/v1/patients/{patient_id}/access-log", {
      params: { path: { patient_id: "me" } },
    }),
    200,
    "access log",
  );
  check(
    log.items.some((row) => row.actor_role === "clinician"),
    "the clinician's reads are logged",
  );
  expect(
    await ana.DELETE("/api/v1/me", { body: { password: ANA.password } }),
    204,
    "erase my account",
  );
  expect(
    await api().POST("/api/v1/auth/login", { body: ANA }),
    401,
    "the erased account cannot log in",
  );
}

// --- the clinic's day ------------------------------------------------------------------------

async function organisationSetUp(ops: Api): Promise<void> {
  const made = expect(
    await ops.POST("/api/v1/organisations", {
      body: { name: "Lakeside Clinic", first_admin: { email: "head@example.org" } },
    }),
    201,
    "the operator creates an organisation",
  );
  check(made.name === "Lakeside Clinic", "organisation made with a first-admin invite");
  const headPassword = "a lakeside morning coffee 2026";
  expect(
    await api().POST("/api/v1/auth/staff-invites/accept", {
      body: {
        code: made.first_admin_invite.code,
        password: headPassword,
        display_name: "Head",
        timezone: "Europe/London",
      },
    }),
    201,
    "the first org admin accepts the invite",
  );
  const head = api((await staffSignIn("head@example.org", headPassword, false)).access_token);
  const orgPath = { path: { organisation_id: made.id } };
  const invite = expect(
    await head.POST("/api/v1/organisations/{organisation_id}/staff-invites", {
      params: orgPath,
      body: { email: "nurse@example.org", role: "clinician" },
    }),
    201,
    "the org admin invites a clinician",
  );
  check(invite.code.length > 0, "a one-time staff invite code");
  const members = expect(
    await head.GET("/api/v1/organisations/{organisation_id}/members", { params: orgPath }),
    200,
    "members",
  );
  check(
    members.items.some((m) => m.email === "head@example.org" && m.second_factor),
    "the org admin is listed, with 2FA on",
    members,
  );
}

async function sessionDay(dr: Api, ana: Api, anaId: string): Promise<string> {
  const patient = { path: { patient_id: anaId } };
  const scheduled = expect(
    await dr.POST("/api/v1/patients/{patient_id}/sessions", {
      params: patient,
      body: {
        status: "scheduled",
        started_at: at(1, "15:00"),
        drug: "ketamine",
        route: "iv",
        weight_kg: 70,
        setting: "clinic",
      },
    }),
    201,
    "schedule a session",
  );
  check(scheduled.status === "scheduled" && scheduled.number === null, "scheduled, unnumbered");
  const sid = scheduled.id;
  const entries = "/api/v1/patients/{patient_id}/mood-entries" as const;
  const me = { path: { patient_id: "me" } };
  const pre = { occurred_at: at(1, "14:00"), mood: 3, session_id: sid, phase: "pre" } as const;
  expect(await ana.POST(entries, { params: me, body: pre }), 201, "pre check-in");
  for (const time of ["14:50", "15:40", "17:00"]) {
    const vitals = expect(
      await dr.POST("/api/v1/patients/{patient_id}/sessions/{session_id}/observations", {
        params: { path: { patient_id: anaId, session_id: sid } },
        body: {
          observed_at: at(1, time),
          systolic: 132,
          diastolic: 84,
          heart_rate: 76,
          spo2: 98,
          sedation_moaas: 5,
        },
      }),
      201,
      `vitals at ${time}`,
    );
    check(vitals.session_id === sid, "observation stored on the session");
  }
  const path = { patient_id: anaId, session_id: sid };
  const current = await dr.GET("/api/v1/patients/{patient_id}/sessions/{session_id}", {
    params: { path },
  });
  expect(current, 200, "read the session");
  const done = expect(
    await dr.PATCH("/api/v1/patients/{patient_id}/sessions/{session_id}", {
      params: { path, header: { "If-Match": etag(current.response) } },
      body: {
        status: "completed",
        dose_mg: 35,
        ended_at: at(1, "15:40"),
        discharged_at: at(1, "17:05"),
      },
    }),
    200,
    "PATCH the session to completed",
  );
  check(done.number === 1 && done.dose_mg_per_kg === 0.5, "session 1 at 0.5 mg/kg", done);
  check(
    done.monitoring.every((item) => item.present || !item.required),
    "monitoring complete",
    done.monitoring,
  );
  const post = { occurred_at: at(1, "18:30"), mood: 7, session_id: sid, phase: "post" } as const;
  expect(await ana.POST(entries, { params: me, body: post }), 201, "post check-in");
  const effect = expect(
    await dr.GET("/api/v1/patients/{patient_id}/sessions/{session_id}/effect", {
      params: { path },
    }),
    200,
    "session effect",
  );
  const acute = effect.windows.find((w) => w.name === "acute");
  check(effect.pre === 3 && acute?.value === 7 && acute.delta === 4, "pre 3, acute 7 (+4)", effect);
  return sid;
}

async function clinicianViews(dr: Api, token: string, anaId: string): Promise<void> {
  const patient = { path: { patient_id: anaId } };
  const trend = expect(
    await dr.GET("/api/v1/patients/{patient_id}/trends", {
      params: { path: { patient_id: anaId }, query: { metric: "mood", bucket: "day" } },
    }),
    200,
    "mood trend",
  );
  check(trend.series.length === 2, "two days of mood", trend.series);
  const course = expect(
    await dr.GET("/api/v1/patients/{patient_id}/course", { params: patient }),
    200,
    "course",
  );
  check(course.sessions_completed === 1 && course.sessions[0].acute_change === 4, "course", course);
  const cohort = expect(
    await dr.GET("/api/v1/patients", {
      params: { query: { sort: "-open_alerts", needs_attention: true } },
    }),
    200,
    "cohort needing attention",
  );
  const row = cohort.items.find((r) => r.id === anaId);
  check(
    row !== undefined && row.open_alerts === 1 && row.latest_phq9 === 11,
    "Ana, one open alert",
    cohort,
  );

  const patientAlerts = expect(
    await dr.GET("/api/v1/patients/{patient_id}/alerts", { params: patient }),
    200,
    "the patient's alerts",
  );
  check(
    patientAlerts.items.some((a) => a.rule === "self_harm"),
    "her PHQ-9 raised self_harm",
    patientAlerts,
  );
  const inbox = expect(await dr.GET("/api/v1/alerts"), 200, "alerts inbox");
  const alert = inbox.items.find((a) => a.patient_id === anaId && a.rule === "self_harm");
  check(alert !== undefined && alert.acknowledged_at === null, "the open self_harm alert", inbox);
  const acked = expect(
    await dr.POST("/api/v1/alerts/{alert_id}/acknowledge", {
      params: { path: { alert_id: alert.id } },
      body: { note: "called" },
    }),
    200,
    "acknowledge",
  );
  check(acked.acknowledged_at !== null && acked.acknowledgement_note === "called", "acknowledged");
  const open = expect(await dr.GET("/api/v1/alerts"), 200, "alerts inbox again");
  check(!open.items.some((a) => a.id === alert.id), "the inbox lists open alerts only");

  const report = expect(
    await dr.GET("/api/v1/patients/{patient_id}/report", { params: patient }),
    200,
    "report (JSON)",
  );
  check(
    report.patient.id === anaId && report.course.sessions_completed === 1,
    "the report's figures",
    report.counts,
  );
  const csv = await dr.GET("/api/v1/patients/{patient_id}/report.csv", {
    params: patient,
    parseAs: "text",
  });
  const text = expect(csv, 200, "report (CSV)");
  check(csv.response.headers.get("Content-Type")?.startsWith("text/csv") === true, "a CSV body");
  check(text.split("\n").length > 2, "CSV rows");
  const bundle = expect(
    await fhirApi(token).GET("/api/v1/patients/{patient_id}/report.fhir.json", { params: patient }),
    200,
    "report (FHIR)",
  );
  check(bundle.resourceType === "Bundle" && bundle.type === "collection", "a FHIR collection");
  const page = await dr.GET("/api/v1/patients/{patient_id}/report.html", {
    params: patient,
    parseAs: "text",
  });
  const html = expect(page, 200, "report (HTML page)");
  check(html.includes("<html") && html.includes("Ana"), "a page about Ana");
  check(page.response.headers.get("Content-Security-Policy") !== null, "with its CSP");
  const chart = expect(
    await dr.GET("/api/v1/patients/{patient_id}/chart.svg", {
      params: { path: { patient_id: anaId }, query: { metric: "phq9" } },
      parseAs: "text",
    }),
    200,
    "PHQ-9 chart",
  );
  check(chart.includes("<svg") && chart.includes("</svg>"), "an SVG document");
}

// --- the run ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const health = expect(
    await createClient<paths, Json>({ baseUrl: ROOT }).GET("/healthz"),
    200,
    "healthz",
  );
  check(health.status === "ok", "the server is up", health);

  console.log("# phone day");
  const anaToken = await phoneSignUp();
  const ana = api(anaToken);
  await phoneEntries(ana);
  await phoneQuestionnaire(ana);
  const anaId = expect(await ana.GET("/api/v1/me"), 200, "GET /me").id;

  console.log("# clinic day");
  const ops = api((await staffSignIn(need("OPS_EMAIL"), need("OPS_PASSWORD"), true)).access_token);
  await organisationSetUp(ops);
  const drToken = (await staffSignIn(need("DR_EMAIL"), need("DR_PASSWORD"), false)).access_token;
  const dr = api(drToken);
  const invite = expect(
    await dr.POST("/api/v1/invites", { body: { organisation_id: null } }),
    201,
    "invite a patient",
  );
  const link = expect(
    await ana.POST("/api/v1/care-links", { body: { code: invite.code } }),
    201,
    "Ana links",
  );
  check(link.patient.id === anaId && link.organisation_id === invite.organisation_id, "care link");
  await sessionDay(dr, ana, anaId);
  await clinicianViews(dr, drToken, anaId);

  console.log("# the phone again: export, access log, erasure");
  await phoneExportAndErase(ana, anaToken, anaId);
  expect(
    await dr.GET("/api/v1/patients/{patient_id}", { params: { path: { patient_id: anaId } } }),
    404,
    "the erased patient is gone for the clinician",
  );
  console.log(`all ${steps} checks passed`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
