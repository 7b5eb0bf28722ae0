/* commands.h -- the ddpm subcommands; each takes (argc, argv) with argv[0] the
 * command name and returns the process exit status (0, EXIT_RUNTIME, EXIT_USAGE). */
#ifndef DDPM_COMMANDS_H
#define DDPM_COMMANDS_H



int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
/* `eval fid` and `eval stats` (cmd_fid.c), dispatched by cmd_eval. */
int eval_fid(int argc, char **argv);
int eval_stats(int argc, char **argv);
int cmd_figure(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eps(int argc, char **argv);
int cmd_sample(int argc, char **argv);

#endif
