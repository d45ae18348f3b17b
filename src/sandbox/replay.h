/*
 * replay.h: answering from a recording (the JSON Lines the client option `record` writes).
 *
 * sbx_replay_open indexes the file in one pass (byte offset and length of each recorded
 * answer, per request key "METHOD path?sorted-query"), so a large recording is never held in
 * memory: an answer is read from the file when it is asked for. Token requests are never
 * answered from a recording (their secrets were replaced by placeholders): the sandbox's own
 * OAuth endpoints answer them, so a client authenticates as usual.
 */
#ifndef SBX_REPLAY_H
#define SBX_REPLAY_H

#include <stddef.h>

struct sbx_server;
struct sbx_ctx;
struct sbx_replay;

enum sbx_replay_mode {
    SBX_REPLAY_ANSWER,  /* recorded answers; anything else is the sandbox's own */
    SBX_REPLAY_STRICT,  /* recorded answers; anything else is a 501 naming the nearest */
    SBX_REPLAY_SEED     /* no answers: the recorded users and recognitions join the store */
};

/* Parses "answer", "strict" or "seed"; 1 ok, 0 unknown. */
int sbx_replay_mode_parse(const char *s, enum sbx_replay_mode *out);

/*
 * Attaches a recording to a running server. Returns 0, or -1 with a message in `err` (a file
 * that cannot be read, a bad line: "recording.jsonl line 17: ..."). SEED imports into the
 * store and keeps nothing open. Takes the server lock itself.
 */
int sbx_replay_attach(struct sbx_server *s, const char *path, enum sbx_replay_mode mode,
                      char *err, size_t errlen);

/* With the lock held, from server.c: 1 when the request was answered from the recording (the
 * reply is in c->rp), 0 when the sandbox should answer it itself. */
int sbx_replay_answer(struct sbx_ctx *c);

void sbx_replay_free(struct sbx_replay *r);

#endif
