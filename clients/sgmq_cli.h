/*  =========================================================================
    sgmq_cli - the `sgmq` command line: entry point and exit codes

    The exit codes are part of the interface: scripts and tests tell a
    refusal from an unreachable broker by them.
    =========================================================================
*/
#ifndef SGMQ_CLI_H_INCLUDED
#define SGMQ_CLI_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

#define SGMQ_EXIT_OK             0
#define SGMQ_EXIT_FAILED         1  //  anything else went wrong
#define SGMQ_EXIT_USAGE          2  //  bad command line or input document
#define SGMQ_EXIT_NOT_AUTHORISED 3  //  the broker does not admit our key
#define SGMQ_EXIT_REFUSED        4  //  the broker refused the request
#define SGMQ_EXIT_UNREACHABLE    5  //  no broker answered in time
#define SGMQ_EXIT_VERIFY_FAILED  6  //  the audit chain does not verify

//  Run `sgmq` with these arguments; returns the exit code.
int
    sgmq_cli_main (int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif
