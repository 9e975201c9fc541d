/*
 * counters.c: the names of the `stats` groups.
 */
#include "counters.h"

#include <string.h>

static const char *const group_names[] = {
    [STATS_POOLS]   = "pools",
    [STATS_SERVERS] = "servers",
    [STATS_ROUTES]  = "routes",
    [STATS_PREVIEW] = "preview",
    [STATS_HOTKEYS] = "hotkeys",
};

enum stats_group
stats_group_by_name(const char *args, size_t len)
{
    size_t i;

    if (len == 0)
        return STATS_GENERAL;
    if (len > 6 && memcmp(args, "route ", 6) == 0)
        return STATS_ROUTE;         /* its arguments are read when it is answered */
    for (i = 0; i < sizeof(group_names) / sizeof(group_names[0]); i++)
        if (group_names[i] != NULL && strlen(group_names[i]) == len
            && memcmp(group_names[i], args, len) == 0)
            return (enum stats_group)i;
    return STATS_UNKNOWN;
}
