/*
 * seed.c: the emulator's starting data, the same on every start (a fixed PRNG seed): 240 users
 * in a management tree (adele.olson, id 10726811, manages brady.garfinkel, id 10726846),
 * recognition modules and criteria, and two years of recognitions and achievements with their
 * newsfeed events, likes, comments and boosts; points budgets (a manager 25,000 points to give,
 * anyone else 5,000, the program's account 1,000,000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define NUSERS        240
#define FIRST_USER_ID 10726800LL
#define ADELE         11     /* index: id 10726811 */
#define BRADY         46     /* index: id 10726846 */
#define NVPS          4      /* indices 1..4 report to the CEO (index 0) */
#define NMANAGERS     12     /* indices 5..16 report to the VPs */
#define NACTIVITY     460    /* seeded recognitions + achievements */
#define SEED_START    1672549200LL   /* 2023-01-01T00:00:00-05:00 */
#define SEED_SPAN     (2LL * 365 * 24 * 3600)

static const struct sbx_module modules[] = {
    {31, "Social Recognition", "<p>Say thanks to a colleague. No points, just appreciation.</p>", "FREE"},
    {32, "Spot Awards", "<p>Reward outstanding work with points from the program budget.</p>", "POINTS"},
    {33, "Email Recognition", "<p>Recognitions sent by replying to a program e-mail.</p>", "EMAIL"},
};

static const struct sbx_criterion criteria[] = {
    {412, 0, "Teamwork", "<p>Worked well with others.</p>", 0, SBX_ANYONE},
    {413, 0, "Innovation", "<p>Found a better way.</p>", 0, SBX_ANYONE},
    {414, 0, "Customer Focus", "<p>Put the customer first.</p>", 0, SBX_ANYONE},
    {415, 0, "Above and Beyond", "<p>Went further than anyone asked.</p>", 0, SBX_ANYONE},
    {420, 1, "Bronze Spot Award", "<p>A thank-you with points.</p>", 500, SBX_ANYONE},
    {421, 1, "Silver Spot Award", "<p>For managers to reward a significant contribution.</p>", 1000,
     SBX_MANAGERS_ONLY},
    {422, 1, "Gold Spot Award", "<p>For managers to reward their own direct reports.</p>", 2500,
     SBX_DIRECT_REPORTS_ONLY},
    {430, 2, "Thank You Note", "<p>A quick thanks sent from e-mail.</p>", 0, SBX_ANYONE},
};

static const char *const first_names[] = {
    "Aaron", "Beatrice", "Carlos", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ingrid", "Jamal",
    "Keiko", "Liam", "Maya", "Nikhil", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tara",
    "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zane", "Amara", "Bruno", "Chloe", "Diego",
    "Esther", "Felix", "Greta", "Hassan", "Iris", "Jonas", "Kira", "Lucas", "Mina", "Noah",
};
static const char *const last_names[] = {
    "Abbott", "Bergstrom", "Chen", "Delgado", "Eriksen", "Fontaine", "Gupta", "Hughes", "Ibarra",
    "Jensen", "Kowalski", "Lambert", "Moreau", "Nakamura", "Okafor", "Petrov", "Quintero", "Rossi",
    "Schmidt", "Tanaka", "Ueda", "Varga", "Whitfield", "Xu", "Yilmaz", "Zimmerman", "Archer",
    "Brennan", "Castillo", "Dubois",
};
static const char *const departments[] = {
    "Engineering", "Sales", "Customer Success", "Finance", "People", "Marketing",
};
static const char *const titles[] = {
    "Analyst", "Specialist", "Engineer", "Senior Engineer", "Account Executive", "Coordinator",
    "Designer", "Consultant",
};
static const char *const rec_texts[] = {
    "Thanks for covering the release night!",
    "Your patience with the new hires made all the difference this week.",
    "Great job turning that customer escalation around.",
    "Thank you for the clear and thorough documentation.",
    "You kept the whole team calm during the outage. Thank you!",
    "Fantastic demo today, the client loved it.",
    "Thanks for jumping in to help with the quarter-end close.",
    "Your idea saved us hours every week. Brilliant work.",
};
static const char *const ach_texts[] = {
    "Shipped the quarterly release",
    "Completed the security certification",
    "Closed the largest deal of the quarter",
    "Ran the charity fundraiser",
    "Finished onboarding the new regional team",
    "Reached 100% customer satisfaction for the month",
};
static const char *const comment_texts[] = {
    "Well deserved!", "Congratulations!", "So true, thank you!", "Great work!",
    "Couldn't agree more.", "Amazing effort.",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* xorshift64*: deterministic, good enough for sample data */
static uint64_t rnd(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t pick(uint64_t *state, size_t n)
{
    return (size_t)(rnd(state) % n);
}

static void set_name(struct sbx_store *st, int i, const char *first, const char *last)
{
    struct sbx_user *u = &st->users[i];
    char base[48];
    int k, n = 1;

    snprintf(u->first, sizeof u->first, "%s", first);
    snprintf(u->last, sizeof u->last, "%s", last);
    snprintf(base, sizeof base, "%s.%s", first, last);
    for (k = 0; base[k]; k++)
        if (base[k] >= 'A' && base[k] <= 'Z')
            base[k] = (char)(base[k] - 'A' + 'a');
    snprintf(u->username, sizeof u->username, "%s", base);
    while (sbx_user_by_name(st, u->username) != i) {
        n++;
        snprintf(u->username, sizeof u->username, "%.40s%u", base, (unsigned)n % 1000u);
    }
    snprintf(u->email, sizeof u->email, "%s@example.com", u->username);
}

static void seed_users(struct sbx_store *st, uint64_t *rs)
{
    int i;

    for (i = 0; i < NUSERS; i++) {
        struct sbx_user *u = &st->users[i];
        u->id = FIRST_USER_ID + i;
        u->created = 1451624400LL + (long long)pick(rs, 2 * 365) * 86400 + (long long)pick(rs, 86400);
        u->username[0] = '\0';
        st->nusers = (size_t)i + 1;
        if (i == ADELE)
            set_name(st, i, "Adele", "Olson");
        else if (i == BRADY)
            set_name(st, i, "Brady", "Garfinkel");
        else
            set_name(st, i, first_names[pick(rs, COUNT(first_names))],
                     last_names[pick(rs, COUNT(last_names))]);
        if (i == 0) {
            u->manager = 0;
            u->is_manager = 1;
            u->department = "Executive";
            u->title = "Chief Executive Officer";
        } else if (i <= NVPS) {
            u->manager = 0;
            u->is_manager = 1;
            u->department = departments[i - 1];
            u->title = "Vice President";
        } else if (i <= NVPS + NMANAGERS) {
            u->manager = 1 + (i % NVPS);
            u->is_manager = 1;
            u->department = st->users[u->manager].department;
            u->title = "Manager";
        } else {
            u->manager = i == BRADY ? ADELE : NVPS + 1 + (int)pick(rs, NMANAGERS);
            u->is_manager = 0;
            u->department = st->users[u->manager].department;
            u->title = titles[pick(rs, COUNT(titles))];
        }
    }
}

/* 1..max distinct users other than `not`; returns a malloc'd array. */
static int *pick_users(uint64_t *rs, int not, size_t max, size_t *n)
{
    size_t want = 1 + pick(rs, max), k = 0, j;
    int *v = malloc(want * sizeof *v);

    if (v == NULL)
        return NULL;
    while (k < want) {
        int u = (int)pick(rs, NUSERS);
        for (j = 0; j < k && v[j] != u; j++)
            ;
        if (u != not && j == k)
            v[k++] = u;
    }
    *n = want;
    return v;
}

static int seed_recognition(struct sbx_store *st, uint64_t *rs, long long t, int from, int to)
{
    struct sbx_recognition r;
    const char *text = rec_texts[pick(rs, COUNT(rec_texts))];
    int tries;

    memset(&r, 0, sizeof r);
    r.nominator = from >= 0 ? from : (int)pick(rs, NUSERS);
    if (to >= 0) {
        r.nominees = malloc(sizeof *r.nominees);
        if (r.nominees == NULL)
            return -1;
        r.nominees[0] = to;
        r.nnominees = 1;
    } else if ((r.nominees = pick_users(rs, r.nominator, 3, &r.nnominees)) == NULL) {
        return -1;
    }
    r.criterion = 0;
    for (tries = 0; tries < 8; tries++) {
        int c = (int)pick(rs, st->ncriteria);
        if (sbx_criterion_allowed(st, c, r.nominator, r.nominees, r.nnominees)) {
            r.criterion = c;
            break;
        }
    }
    r.text = sbx_strdup(text);
    if (r.text == NULL) {
        free(r.nominees);
        return -1;
    }
    r.text_len = strlen(text);
    r.created = t;
    return sbx_store_add_recognition(st, &r);
}

static int seed_achievement(struct sbx_store *st, uint64_t *rs, long long t)
{
    struct sbx_achievement a;
    const char *text = ach_texts[pick(rs, COUNT(ach_texts))];
    time_t day;
    struct tm tm;

    memset(&a, 0, sizeof a);
    a.creator = pick(rs, 4) == 0 ? -1 : (int)pick(rs, NUSERS);
    if ((a.participants = pick_users(rs, -1, 4, &a.nparticipants)) == NULL)
        return -1;
    a.description = sbx_strdup(text);
    if (a.description == NULL) {
        free(a.participants);
        return -1;
    }
    a.desc_len = strlen(text);
    a.points = pick(rs, 3) == 0 ? 250 : 0;
    day = (time_t)(t - 5 * 3600 - (long long)pick(rs, 14) * 86400);
    gmtime_r(&day, &tm);
    snprintf(a.date, sizeof a.date, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
    a.created = t;
    return sbx_store_add_achievement(st, &a);
}

static int seed_reactions(struct sbx_store *st, uint64_t *rs, int ev)
{
    static const size_t most[SBX_REACTION_KINDS] = {6, 4, 3};
    long long t = st->events[ev].created;
    int k;

    for (k = 0; k < SBX_REACTION_KINDS; k++) {
        size_t n = pick(rs, most[k]), i;
        for (i = 0; i < n; i++) {
            struct sbx_reaction r;
            memset(&r, 0, sizeof r);
            r.event = ev;
            r.user = (int)pick(rs, NUSERS);
            r.created = t + 60 + (long long)pick(rs, 3 * 86400);
            if (k == SBX_COMMENT &&
                (r.comment = sbx_strdup(comment_texts[pick(rs, COUNT(comment_texts))])) == NULL)
                return -1;
            if (k == SBX_BOOST)
                r.points = 50 * (long long)(1 + pick(rs, 4));
            if (sbx_store_add_reaction(st, (enum sbx_reaction_kind)k, &r) < 0)
                return -1;
        }
    }
    return 0;
}

struct sbx_store *sbx_seed(void)
{
    struct sbx_store *st = calloc(1, sizeof *st);
    uint64_t rs = 0x5eed2018c0ffeeULL;
    long long t = SEED_START, step = SEED_SPAN / NACTIVITY;
    int i;

    if (st == NULL)
        return NULL;
    st->modules = modules;
    st->nmodules = COUNT(modules);
    st->criteria = criteria;
    st->ncriteria = COUNT(criteria);
    st->next_rec_id = 7770001;
    st->next_ach_id = 5550001;
    st->next_event_id = 880001;
    st->next_reaction_id = 990001;
    st->next_upload_id = 9900001;
    st->users = calloc(NUSERS, sizeof *st->users);
    if (st->users == NULL)
        goto fail;
    seed_users(st, &rs);
    for (i = 0; i < NUSERS; i++)
        st->users[i].budget = st->users[i].is_manager ? SBX_SEED_MANAGER_BUDGET : SBX_SEED_USER_BUDGET;
    st->program_budget = SBX_SEED_PROGRAM_BUDGET;
    for (i = 0; i < NACTIVITY; i++) {
        int rc;
        t += 1 + (long long)pick(&rs, (size_t)(2 * step));
        if (i % 50 == 7)   /* adele thanks her report now and then */
            rc = seed_recognition(st, &rs, t, ADELE, BRADY);
        else if (pick(&rs, 7) == 0)
            rc = seed_achievement(st, &rs, t);
        else
            rc = seed_recognition(st, &rs, t, -1, -1);
        if (rc < 0 || seed_reactions(st, &rs, (int)st->nevents - 1) != 0)
            goto fail;
    }
    return st;
fail:
    sbx_store_free(st);
    return NULL;
}
