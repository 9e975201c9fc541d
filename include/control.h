/*
 * control.h: commands for the luagent that is already running.
 *
 * The running process is found through --pid-file FILE, else through -p PORT
 * on 127.0.0.1 (-l ADDR when given), whose `stats` answer names its pid.
 */
#ifndef CONTROL_H
#define CONTROL_H

struct settings;

/*
 * --reload [--force]: send the running luagent SIGHUP (after touching its
 * force file with --force), wait for the outcome when its port answers, and
 * print it. Returns the exit status: 0 took effect (or sent, when the
 * outcome cannot be seen), 1 refused, failed or not found.
 */
int control_reload(const struct settings *s);

/*
 * --preview FILE: name FILE in the running luagent's POLICY.preview and send
 * it SIGUSR2, which loads FILE as a candidate placed beside the live policy
 * (preview.h); --preview --drop removes the file and ends the preview. Waits
 * for the outcome in `stats preview` when the port answers. Returns the exit
 * status: 0 done (or sent), 1 failed or not found.
 */
int control_preview(const struct settings *s);

#endif
