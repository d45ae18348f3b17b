/*
 * json.c: JSON. Answers are decoded here, straight into Lua values with integers kept exact;
 * request bodies are encoded by a private lua-cjson instance (cjson.new(), so the caller's own
 * cjson settings never change what we send).
 */
#include <math.h>
#include <string.h>

#include "binding/binding.h"
#include "binding/error.h"
#include "binding/json.h"
#include "core/buf.h"
#include "core/url.h"

static const char json_key = 'j'; /* registry: {encode = f, null = v} of our cjson instance */

void ach_json_init(lua_State *L)
{
	lua_getglobal(L, "require");
	lua_pushliteral(L, "cjson");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "new");
	lua_call(L, 0, 1); /* cjson, instance */
	lua_getfield(L, -1, "decode_max_depth");
	lua_pushinteger(L, 200);
	lua_call(L, 1, 0);
	lua_getfield(L, -1, "encode_sparse_array");
	lua_pushboolean(L, 1); /* convert sparse arrays to objects instead of raising */
	lua_call(L, 1, 0);
	lua_createtable(L, 0, 2);
	lua_getfield(L, -2, "encode");
	lua_setfield(L, -2, "encode");
	lua_getfield(L, -2, "null");
	lua_setfield(L, -2, "null");
	ach_rawsetp(L, LUA_REGISTRYINDEX, &json_key);
	lua_pop(L, 2);
}

static void push_json_field(lua_State *L, const char *name)
{
	ach_rawgetp(L, LUA_REGISTRYINDEX, &json_key);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
}

void ach_push_null(lua_State *L)
{
	push_json_field(L, "null");
}

/* ---- decoding --------------------------------------------------------------------------
 * A JSON decoder straight into Lua values. lua-cjson 2.1.0 reads every number as a double,
 * which turns ids into floats and silently corrupts integers beyond 2^53; this one gives
 * integers for integral literals (Lua 5.3+) and floats otherwise, through Lua's own number
 * conversion. null is lightuserdata NULL, the same value as cjson.null. */

#define JSON_MAX_DEPTH 200
#define JSON_MAX_NUMBER 400

typedef struct jparser {
	lua_State *L;
	const char *start, *p, *end;
	const char *err;
	int depth;
	int held; /* stack slots the members waiting at every level take */
	size_t tables_left; /* arrays and objects the document may still make */
} jparser;

/* A table costs some 60 to 100 bytes of Lua heap, `[]` two bytes of JSON: a document of
 * nothing but empty arrays would take 40 times its size. At most one array or object per
 * JSON_TABLE_BYTES bytes of the document (and JSON_TABLE_FLOOR for any document) keeps what
 * decoding allocates within some ten times the answer; API pages have one per 50 bytes or more. */
#define JSON_TABLE_BYTES 8
#define JSON_TABLE_FLOOR 4096

static int json_value(jparser *j);

static int json_fail(jparser *j, const char *what)
{
	if (j->err == NULL)
		j->err = what;
	return 0;
}

static void skip_ws(jparser *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hex4(const char *p)
{
	int v = 0, i;
	for (i = 0; i < 4; i++) {
		int c = (unsigned char)p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static void add_utf8(luaL_Buffer *b, unsigned long cp)
{
	char out[4];
	luaL_addlstring(b, out, ach_utf8(cp, out));
}

/* Fails a string being built in b. The buffer is finished and popped first: in Lua 5.4 a
 * buffer past its first size lives in a box marked to be closed, and Lua 5.4.4's lua_settop
 * (which would close it when the decoder cuts the stack back) keeps a stack pointer across the
 * close, which may move the stack. */
static int string_fail(jparser *j, luaL_Buffer *b, const char *what)
{
	luaL_pushresult(b);
	lua_pop(j->L, 1);
	return json_fail(j, what);
}

/* Pushes the string starting after the opening quote. */
static int json_string(jparser *j)
{
	const char *s = j->p, *q = s;
	luaL_Buffer b;
	/* fast path: no escapes */
	while (q < j->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
		q++;
	if (q < j->end && *q == '"') {
		lua_pushlstring(j->L, s, (size_t)(q - s));
		j->p = q + 1;
		return 1;
	}
	luaL_buffinit(j->L, &b);
	luaL_addlstring(&b, s, (size_t)(q - s));
	while (q < j->end) {
		unsigned char c = (unsigned char)*q;
		if (c == '"') {
			luaL_pushresult(&b);
			j->p = q + 1;
			return 1;
		}
		if (c < 0x20)
			return string_fail(j, &b, "control character in a string");
		if (c != '\\') {
			luaL_addchar(&b, (char)c);
			q++;
			continue;
		}
		if (q + 1 >= j->end)
			break;
		switch (q[1]) {
		case '"': luaL_addchar(&b, '"'); break;
		case '\\': luaL_addchar(&b, '\\'); break;
		case '/': luaL_addchar(&b, '/'); break;
		case 'b': luaL_addchar(&b, '\b'); break;
		case 'f': luaL_addchar(&b, '\f'); break;
		case 'n': luaL_addchar(&b, '\n'); break;
		case 'r': luaL_addchar(&b, '\r'); break;
		case 't': luaL_addchar(&b, '\t'); break;
		case 'u': {
			long cp;
			if (q + 6 > j->end || (cp = hex4(q + 2)) < 0)
				return string_fail(j, &b, "bad \\u escape");
			q += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				long lo;
				if (q + 8 > j->end || q[2] != '\\' || q[3] != 'u' || (lo = hex4(q + 4)) < 0xDC00 ||
				    lo > 0xDFFF)
					return string_fail(j, &b, "bad surrogate pair");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				q += 6;
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return string_fail(j, &b, "lone low surrogate");
			}
			add_utf8(&b, (unsigned long)cp);
			break;
		}
		default:
			return string_fail(j, &b, "bad escape");
		}
		q += 2;
	}
	return string_fail(j, &b, "unterminated string");
}

static int json_number(jparser *j)
{
	const char *s = j->p, *q = s;
	char tmp[JSON_MAX_NUMBER + 1];
	int integral = 1;
	size_t n;
	if (q < j->end && *q == '-')
		q++;
	if (q >= j->end || !(*q >= '0' && *q <= '9'))
		return json_fail(j, "bad number");
	if (*q == '0')
		q++;
	else
		while (q < j->end && *q >= '0' && *q <= '9')
			q++;
	if (q < j->end && *q == '.') {
		integral = 0;
		q++;
		if (q >= j->end || !(*q >= '0' && *q <= '9'))
			return json_fail(j, "bad number");
		while (q < j->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < j->end && (*q == 'e' || *q == 'E')) {
		integral = 0;
		q++;
		if (q < j->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= j->end || !(*q >= '0' && *q <= '9'))
			return json_fail(j, "bad number");
		while (q < j->end && *q >= '0' && *q <= '9')
			q++;
	}
	n = (size_t)(q - s);
	j->p = q;
#if ACH_HAS_INTEGERS
	if (integral && n - (*s == '-') <= 19) { /* 19 digits cannot overflow the accumulator */
		/* exact, when it fits */
		const char *d = s + (*s == '-');
		unsigned long long v = 0;
		for (; d < q; d++)
			v = v * 10 + (unsigned long long)(*d - '0');
		if (*s == '-' ? v <= 9223372036854775808ULL : v <= 9223372036854775807ULL) {
			lua_pushinteger(j->L, *s == '-' ? (lua_Integer)(0 - v) : (lua_Integer)v);
			return 1;
		}
	}
#endif
	(void)integral;
	if (n > JSON_MAX_NUMBER)
		return json_fail(j, "number too long");
	memcpy(tmp, s, n);
	tmp[n] = '\0';
#if LUA_VERSION_NUM >= 503
	if (lua_stringtonumber(j->L, tmp) == 0)
		return json_fail(j, "bad number");
	if (lua_isinteger(j->L, -1)) { /* an integral literal too large for an integer */
		lua_Number f = (lua_Number)lua_tointeger(j->L, -1);
		lua_pop(j->L, 1);
		lua_pushnumber(j->L, f);
	}
#else
	lua_pushlstring(j->L, tmp, n);
	{
		lua_Number f = lua_tonumber(j->L, -1);
		lua_pop(j->L, 1);
		lua_pushnumber(j->L, f);
	}
#endif
	return 1;
}

static int json_literal(jparser *j, const char *word, size_t n)
{
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
		return json_fail(j, "unexpected character");
	j->p += n;
	return 1;
}

/* Objects and arrays collect their members on the stack and then go into a table made at its
 * final size: no rehash while it fills, and no discarded part arrays for the collector. A long
 * one moves its members into the table every JSON_CHUNK members; and once JSON_HELD slots wait
 * at all levels together, each level moves its members before taking another (LuaJIT and 5.1
 * give a C function 8000 slots, and 200 levels with a chunk waiting at each would need more):
 * deep nesting costs speed, never a failure. */
#define JSON_CHUNK 64
#define JSON_HELD 2048
#define JSON_STACK_ROOM 8 /* slots a member needs: its key, its value, and json_flush's copies */

/* Moves the n pairs (object) or values (array) above stack slot `tbl` into the table there,
 * making it first (sized for them) if *made is 0. `next` is the array index of the first
 * value. */
static void json_flush(lua_State *L, int tbl, int *made, int n, int is_array, int next)
{
	int i;
	if (!*made) {
		if (is_array)
			lua_createtable(L, n, 0);
		else
			lua_createtable(L, 0, n);
		lua_insert(L, tbl);
		*made = 1;
	}
	if (is_array)
		for (i = n - 1; i >= 0; i--)
			lua_rawseti(L, tbl, next + i);
	else {
		/* in document order, so that of two equal keys the last wins, as with cjson */
		for (i = 0; i < n; i++) {
			lua_pushvalue(L, tbl + 1 + 2 * i);
			lua_pushvalue(L, tbl + 2 + 2 * i);
			lua_rawset(L, tbl);
		}
		lua_settop(L, tbl);
	}
}

static int json_object(jparser *j)
{
	lua_State *L = j->L;
	int tbl = lua_gettop(L) + 1, made = 0, n = 0;
	skip_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		lua_newtable(L);
		return 1;
	}
	for (;;) {
		if (n > 0 && j->held > JSON_HELD) {
			json_flush(L, tbl, &made, n, 0, 0);
			j->held -= 2 * n;
			n = 0;
		}
		if (!lua_checkstack(L, JSON_STACK_ROOM))
			return json_fail(j, "nested too deeply");
		skip_ws(j);
		if (j->p >= j->end || *j->p != '"')
			return json_fail(j, "expected a string key");
		j->p++;
		if (!json_string(j))
			return 0;
		skip_ws(j);
		if (j->p >= j->end || *j->p != ':')
			return json_fail(j, "expected ':'");
		j->p++;
		if (!json_value(j))
			return 0;
		j->held += 2;
		if (++n == JSON_CHUNK) {
			json_flush(L, tbl, &made, n, 0, 0);
			j->held -= 2 * n;
			n = 0;
		}
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			json_flush(L, tbl, &made, n, 0, 0);
			j->held -= 2 * n;
			return 1;
		}
		return json_fail(j, "expected ',' or '}'");
	}
}

static int json_array(jparser *j)
{
	lua_State *L = j->L;
	int tbl = lua_gettop(L) + 1, made = 0, n = 0, next = 1;
	skip_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		lua_newtable(L);
		return 1;
	}
	for (;;) {
		if (n > 0 && j->held > JSON_HELD) {
			json_flush(L, tbl, &made, n, 1, next);
			j->held -= n;
			next += n;
			n = 0;
		}
		if (!lua_checkstack(L, JSON_STACK_ROOM))
			return json_fail(j, "nested too deeply");
		if (!json_value(j))
			return 0;
		j->held++;
		if (++n == JSON_CHUNK) {
			json_flush(L, tbl, &made, n, 1, next);
			j->held -= n;
			next += n;
			n = 0;
		}
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == ']') {
			j->p++;
			json_flush(L, tbl, &made, n, 1, next);
			j->held -= n;
			return 1;
		}
		return json_fail(j, "expected ',' or ']'");
	}
}

static int json_value(jparser *j)
{
	int ok;
	skip_ws(j);
	if (j->p >= j->end)
		return json_fail(j, "unexpected end");
	if (++j->depth > JSON_MAX_DEPTH)
		return json_fail(j, "nested too deeply");
	if (!lua_checkstack(j->L, JSON_STACK_ROOM))
		return json_fail(j, "nested too deeply"); /* never raises: it runs inside the driver */
	if ((*j->p == '{' || *j->p == '[') && j->tables_left-- == 0)
		return json_fail(j, "more arrays and objects than the document's size allows");
	switch (*j->p) {
	case '{':
		j->p++;
		ok = json_object(j);
		break;
	case '[':
		j->p++;
		ok = json_array(j);
		break;
	case '"':
		j->p++;
		ok = json_string(j);
		break;
	case 't':
		ok = json_literal(j, "true", 4);
		if (ok)
			lua_pushboolean(j->L, 1);
		break;
	case 'f':
		ok = json_literal(j, "false", 5);
		if (ok)
			lua_pushboolean(j->L, 0);
		break;
	case 'n':
		ok = json_literal(j, "null", 4);
		if (ok)
			lua_pushlightuserdata(j->L, NULL); /* cjson.null */
		break;
	default:
		ok = json_number(j);
		break;
	}
	j->depth--;
	return ok;
}

int ach_json_decode(lua_State *L, const char *s, size_t n)
{
	jparser j;
	int top = lua_gettop(L);
	j.L = L;
	j.start = j.p = s;
	j.end = s + n;
	j.err = NULL;
	j.depth = 0;
	j.held = 0;
	j.tables_left = n / JSON_TABLE_BYTES + JSON_TABLE_FLOOR;
	if (json_value(&j)) {
		skip_ws(&j);
		if (j.p == j.end)
			return 1;
		json_fail(&j, "trailing characters");
	}
	lua_settop(L, top);
	lua_pushfstring(L, "%s at byte %d", j.err, (int)(j.p - j.start) + 1);
	return 0;
}

/* achievers.json_decode(text) -> value | nil, message */
int ach_json_decode_lua(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	if (ach_json_decode(L, s, n))
		return 1;
	lua_pushnil(L);
	lua_insert(L, -2);
	return 2;
}

void ach_json_encode(lua_State *L, int idx, ach_buf *b)
{
	size_t n;
	const char *s;
	idx = lua_absindex(L, idx);
	push_json_field(L, "encode");
	lua_pushvalue(L, idx);
	lua_call(L, 1, 1); /* raises on functions, NaN and the like: misuse */
	s = lua_tolstring(L, -1, &n);
	if (ach_buf_add(b, s, n) != 0)
		ach_nomem(L);
	lua_pop(L, 1);
}
