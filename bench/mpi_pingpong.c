// SPDX-License-Identifier: BSD-3-Clause
// An MPI ping-pong for bench_transport, which runs it with mpirun -np 2 over
// one BTL at a time: rank 0 sends an 8-byte message to rank 1 (MPI_Send),
// which sends it back; rank 0 times batches of such round trips after a
// warm-up and prints the median batch's mean round trip:
//
//   mpi_pingpong [ROUND_TRIPS [BATCHES]]    (defaults 1000 and 11)
//   -> rtt_us 0.512
//
// Each rank dies with its parent (mpirun), so that a killed mpirun leaves
// no rank spinning in MPI_Recv.
#include <mpi.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

enum { TAG = 7, WARMUP = 1000, MAX_BATCHES = 101 };

// One round trip seen from rank 0: false when the echo is not what was sent.
static int round_trip(uint64_t v)
{
    uint64_t back = 0;
    MPI_Send(&v, 1, MPI_UINT64_T, 1, TAG, MPI_COMM_WORLD);
    MPI_Recv(&back, 1, MPI_UINT64_T, 1, TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return back == v;
}

// Rank 1: echoes every message; a zero is the last one.
static void echo(void)
{
    uint64_t v;
    do {
        MPI_Recv(&v, 1, MPI_UINT64_T, 0, TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&v, 1, MPI_UINT64_T, 0, TAG, MPI_COMM_WORLD);
    } while (v != 0);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Rank 0: the median over batches of the mean round trip, in seconds, or
// -1 when an echo came back wrong.
static double measure(long trips, int batches)
{
    uint64_t v = 1;
    for (int i = 0; i < WARMUP; i++)
        if (!round_trip(v++))
            return -1;
    double rtt[MAX_BATCHES];
    for (int b = 0; b < batches; b++) {
        double t0 = MPI_Wtime();
        for (long i = 0; i < trips; i++)
            if (!round_trip(v++))
                return -1;
        rtt[b] = (MPI_Wtime() - t0) / (double)trips;
    }
    qsort(rtt, (size_t)batches, sizeof(rtt[0]), by_value);
    return rtt[batches / 2];
}

int main(int argc, char **argv)
{
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) // mpirun died before the prctl
        return 1;
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long trips = argc > 1 ? strtol(argv[1], NULL, 10) : 1000;
    int batches = argc > 2 ? atoi(argv[2]) : 11;
    if (size != 2 || trips < 1 || batches < 1 || batches > MAX_BATCHES) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np 2 mpi_pingpong [ROUND_TRIPS [BATCHES <= %d]]\n",
                    MAX_BATCHES);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int rc = 0;
    if (rank == 0) {
        double rtt = measure(trips, batches);
        round_trip(0); // stops the echo
        if (rtt < 0) {
            fprintf(stderr, "mpi_pingpong: rank 1 echoed a different value\n");
            rc = 1;
        } else {
            printf("rtt_us %.3f\n", rtt * 1e6);
        }
    } else {
        echo();
    }
    MPI_Finalize();
    return rc;
}
