/*
 * evidence.h: every field and behaviour the sandbox serves, classed by what it rests on, in one
 * X-macro list: X(ID, object, field, class, source). The classes:
 *   DOC       Achievers' own documentation shows it (achievers-api.md tag [DOC]);
 *   CODE      public client code reads or sends it ([CODE], [CODE-internal]);
 *   INFERRED  a proposal of this emulator, confirmed by nothing ([INFERRED]).
 * In strict mode (sandbox.start{strict = true}, achievers-sandbox --strict) nothing INFERRED is
 * served: views ask sbx_serves(s, SBX_EV_ID) before adding such a field. Sources name the
 * sections of achievers-api.md and its source ids (S1-S13 documentation pages, C1-C3 code).
 * doc/sandbox-evidence.md is generated from this list (achievers-sandbox --evidence).
 */
#ifndef SBX_EVIDENCE_H
#define SBX_EVIDENCE_H

#define SBX_EVIDENCE_LIST(X) \
    /* token endpoint */ \
    X(TOKEN_ACCESS,     "token answer", "access_token", DOC, "1.5-1.6; S2, S11") \
    X(TOKEN_TYPE,       "token answer", "token_type (\"Bearer\")", DOC, "0 (Authentication page); S2") \
    X(TOKEN_EXPIRES,    "token answer", "expires_in (UNIX time; relative on request)", DOC, "0 (Authentication page); S2") \
    X(TOKEN_SCOPE,      "token answer", "scope", CODE, "1.6; C1") \
    X(TOKEN_REFRESH,    "token answer", "refresh_token (only with refresh_tokens)", INFERRED, "1.5, 4.2") \
    X(TOKEN_REISSUE,    "behaviour", "same token while more than 2 h from expiry", DOC, "0 (Authentication page)") \
    X(TOKEN_FORM_BASIC, "behaviour", "token requests as form or JSON, credentials in body or Basic", INFERRED, "1.5") \
    /* authorization endpoint */ \
    X(AUTHZ_CODE,       "authorize redirect", "code, state", CODE, "1.7; C2") \
    X(AUTHZ_DENIED,     "authorize redirect", "error=access_denied, state", INFERRED, "1.7 (RFC 6749)") \
    X(AUTHZ_ERRORS,     "authorize redirect", "error=invalid_scope / unsupported_response_type, state", INFERRED, "1.7 (RFC 6749 4.1.2.1)") \
    X(AUTHZ_REDIRECT,   "behaviour", "only the registered redirect URI", DOC, "1.2, 1.7; S4") \
    /* errors */ \
    X(ERROR_CODE,       "error", "error, error_description", DOC, "0, 2.6; RFC 6749 5.2 (the token endpoint's standard; API errors follow it)") \
    X(ERROR_FIELD,      "error", "field (the parameter at fault)", INFERRED, "2.6") \
    X(ERROR_STATUS,     "behaviour", "400, 401 + WWW-Authenticate, 403, 404, 429, 5xx", INFERRED, "0, 2.6") \
    /* paging */ \
    X(PAGING_CORE,      "paging", "totalItems, totalPages, page, pageSize, self, first, last", DOC, "2.4; S7") \
    X(PAGING_NEXT,      "paging", "next, previous", INFERRED, "2.4") \
    X(PAGING_SIZE,      "behaviour", "pageSize default 25, capped at 100", DOC, "2.4; S7 (default), cap inferred") \
    /* users */ \
    X(USER_CORE,        "user", "id, firstName, lastName, username, emailAddress, dateCreated", DOC, "3.3; S5-S7") \
    X(USER_LINKS,       "user", "links.self, profileImageUrl, isPersonalizedProfileImage", DOC, "3.3; S5-S7") \
    X(USER_FULLNAME,    "user", "fullName", CODE, "3.3; C1") \
    X(USER_MANAGER_ID,  "user", "managerId", INFERRED, "3.4") \
    X(USER_DETAIL,      "user (one)", "manager, isManager, department, title", INFERRED, "3.4") \
    X(SUMMARY_CORE,     "user summary", "id, username, fullName, profileImageUrl, links.self (fields of the user)", DOC, "3.3; S5-S7, C1") \
    /* recognitions */ \
    X(REC_CORE,         "recognition", "id, dateCreated, links.self", DOC, "2.3 conventions; S5, S7") \
    X(REC_FIELDS,       "recognition", "recognitionText, criterion.id, nominees (named after the POST parameters)", CODE, "3.6; C1") \
    X(REC_CRITERION_NAME, "recognition", "criterion.name", CODE, "3.7; C1 (a criterion's name)") \
    X(REC_POINTS,       "recognition", "points, nominator", INFERRED, "3.5 (proposed shape)") \
    X(REC_CRITERION_X,  "recognition", "criterion.moduleId, criterion.moduleName, criterion.points", INFERRED, "3.5") \
    X(REC_EVENT_URL,    "recognition", "newsfeedEventURL", CODE, "3.6; C1") \
    X(REC_EVENT_ID,     "recognition", "newsfeedEventId", INFERRED, "3.5") \
    X(REC_EVENT_LINK,   "recognition", "links.newsfeedEvent", INFERRED, "3.5") \
    X(REC_UPLOAD,       "recognition", "fileUpload.url", CODE, "3.2; C2") \
    X(REC_UPLOAD_ID,    "recognition", "fileUpload.id", INFERRED, "3.2") \
    X(REC_POST_201,     "behaviour", "POST /recognitions answers 201 with the recognition", INFERRED, "3.6") \
    X(REC_RULES,        "behaviour", "nominees exist and exclude the sender; criterion allowed for all", INFERRED, "3.6") \
    X(REC_BUDGET,       "behaviour", "points criteria debit the sender's budget; over it: 403", INFERRED, "3.6") \
    /* achievements */ \
    X(ACH_CORE,         "achievement", "id, dateCreated", DOC, "2.3 conventions; S5, S7") \
    X(ACH_FIELDS,       "achievement", "description, dateAchieved, creator, participants, points (named after the POST parameters)", DOC, "3.1; S8") \
    X(ACH_EVENT_URL,    "achievement", "newsfeedEventURL", INFERRED, "3.1 (mirrors POST /recognitions)") \
    X(ACH_EVENT_ID,     "achievement", "newsfeedEventId", INFERRED, "3.1") \
    X(ACH_EVENT_LINK,   "achievement", "links.newsfeedEvent", INFERRED, "3.1") \
    X(ACH_CREATOR_NAME, "achievement", "creator.username of the integration (system token, no creator)", INFERRED, "3.1") \
    X(ACH_UPLOAD,       "achievement", "fileUpload.url", CODE, "3.2; C2") \
    X(ACH_CREATOR_RULE, "behaviour", "user token: owner is creator; system token: creator or the key name", DOC, "1.8; S3") \
    X(ACH_BUDGET,       "behaviour", "achievement points come out of the program's account; over it: 403", DOC, "3.1; S8 (account), 403 inferred") \
    /* uploads */ \
    X(UPLOAD_ID,        "upload answer", "fileUploadId", DOC, "3.2; S5") \
    X(UPLOAD_URL,       "upload answer", "url", INFERRED, "3.2") \
    X(UPLOAD_DETAIL,    "upload answer", "size, sha256, filename, contentType", INFERRED, "3.2") \
    X(UPLOAD_FIELD,     "behaviour", "multipart/form-data, field file", INFERRED, "0, 3.2") \
    X(UPLOAD_IMAGE,     "behaviour", "images only (PNG, JPEG, GIF by content): other files 400", DOC, "3.2; S5") \
    /* recognition options */ \
    X(MODULE_FIELDS,    "module", "id, name, description, bannerURL, moduleType, criteria", CODE, "3.7; C1") \
    X(CRITERION_FIELDS, "module criterion", "id, name, description, criterionBannerUrl", CODE, "3.7; C1") \
    X(CRITERION_POINTS, "module criterion", "points", INFERRED, "3.7 (field name unknown)") \
    /* newsfeed */ \
    X(EVENT_CORE,       "newsfeed event", "id, eventType, creator.id", CODE, "3.8; C2") \
    X(EVENT_CREATOR,    "newsfeed event", "creator.name, creator.profileImageUrl, newsfeedEventURL", CODE, "3.8; C2") \
    X(EVENT_CREATOR_USERNAME, "newsfeed event", "creator.username", INFERRED, "3.8") \
    X(EVENT_DATE,       "newsfeed event", "dateCreated, links.self/likes/comments/boosts", DOC, "2.3 conventions, 3.9-3.12 paths; S3") \
    X(EVENT_EMBED,      "newsfeed event", "recognition / achievement (the embedded object)", INFERRED, "3.8") \
    X(EVENT_COUNTS,     "newsfeed event", "likesCount, commentsCount, boostsCount", INFERRED, "3.8") \
    X(REACTION_CORE,    "like, comment, boost", "id, dateCreated", DOC, "2.3 conventions") \
    X(REACTION_FIELDS,  "like, comment, boost", "user, comment, points", INFERRED, "3.10-3.12") \
    /* limits */ \
    X(RATE_LIMITS,      "behaviour", "per token: GET /recognitions and /newsfeed-events 50/60 s each, others 500/120 s", DOC, "2.5; S1") \
    X(RATE_429,         "behaviour", "over a limit: 429 with Retry-After", INFERRED, "2.5") \
    X(BODY_LIMITS,      "behaviour", "bodies over 1 MiB (uploads 8 MiB, files 5 MiB): 413", INFERRED, "this emulator") \
    X(UPLOAD_KEPT,      "behaviour", "the newest 64 MiB of files are kept; an older file's URL: 410", INFERRED, "this emulator")

#define SBX_EV_ENUM(id, object, field, cls, source) SBX_EV_##id,
enum sbx_evidence_id { SBX_EVIDENCE_LIST(SBX_EV_ENUM) SBX_EV_COUNT };
#undef SBX_EV_ENUM

struct sbx_server;
/* Does the server serve field or behaviour `id`? Everything, except INFERRED ones in strict mode. */
int sbx_serves(const struct sbx_server *s, enum sbx_evidence_id id);

#endif
