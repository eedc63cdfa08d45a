/* log: leveled logging to stderr, text ("ts level msg key=value…") or one JSON
 * object a line; every line carries the pid. A message is free text followed by
 * key=value fields (values with spaces in double quotes); json mode splits them. */
#ifndef NEONFCGI_LOG_H
#define NEONFCGI_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_init(enum log_level level, enum log_format format);
void log_write(enum log_level level, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...)  log_write(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)   log_write(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_warnx(...)  log_write(LOG_LEVEL_WARN, 0, __VA_ARGS__)
#define log_errorx(...) log_write(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
/* The _errno variants append error="strerror(errno)". */
#define log_warn(...)  log_write(LOG_LEVEL_WARN, errno, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, errno, __VA_ARGS__)

#endif
