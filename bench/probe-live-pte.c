// What installing one page (UFFDIO_COPY, 4 KiB) into another process costs when that process is using the page
// table it lands in, against an idle one (docs/BENCHMARKS.md §21). gcc -O2 -o /tmp/probe-live-pte bench/probe-live-pte.c
// A child maps 1 GiB registered MISSING and hands its uffd over; the parent installs the first page of every 2 MiB
// (new page tables), the child (optionally) keeps reading those pages, the parent installs the second page of each.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static size_t n=(size_t)1<<30, chunk=2<<20;
int main(void){
  char*src=aligned_alloc(4096,4096); memset(src,7,4096);
  for(int touch=0;touch<2;touch++){
    int sv[2]; socketpair(AF_UNIX,SOCK_STREAM,0,sv);
    pid_t c=fork();
    if(c==0){ int u=syscall(SYS_userfaultfd,O_CLOEXEC|O_NONBLOCK); struct uffdio_api a={.api=UFFD_API}; ioctl(u,UFFDIO_API,&a);
      char*p=mmap(0,n,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); madvise(p,n,MADV_NOHUGEPAGE);
      struct uffdio_register r={.range={(unsigned long)p,n},.mode=UFFDIO_REGISTER_MODE_MISSING}; ioctl(u,UFFDIO_REGISTER,&r);
      char b[CMSG_SPACE(sizeof(int))]; struct iovec io={.iov_base=&p,.iov_len=sizeof p}; struct msghdr m={.msg_iov=&io,.msg_iovlen=1,.msg_control=b,.msg_controllen=sizeof b};
      struct cmsghdr*cm=CMSG_FIRSTHDR(&m); cm->cmsg_level=SOL_SOCKET; cm->cmsg_type=SCM_RIGHTS; cm->cmsg_len=CMSG_LEN(sizeof(int)); memcpy(CMSG_DATA(cm),&u,sizeof u);
      sendmsg(sv[1],&m,0);
      char go; read(sv[1],&go,1); // phase 1 done
      volatile long s=0; if(touch) for(size_t o=0;o<n;o+=chunk) s+=p[o];
      write(sv[1],&go,1);
      for(;;) { if(touch) for(size_t o=0;o<n;o+=chunk) s+=p[o]; else pause(); }
    }
    char*p; char b[CMSG_SPACE(sizeof(int))]; struct iovec io={.iov_base=&p,.iov_len=sizeof p}; struct msghdr m={.msg_iov=&io,.msg_iovlen=1,.msg_control=b,.msg_controllen=sizeof b};
    recvmsg(sv[0],&m,0); int u; memcpy(&u,CMSG_DATA(CMSG_FIRSTHDR(&m)),sizeof u);
    double t0=now();
    for(size_t o=0;o<n;o+=chunk){struct uffdio_copy cp={.dst=(unsigned long)p+o,.src=(unsigned long)src,.len=4096}; if(ioctl(u,UFFDIO_COPY,&cp)){perror("copy");exit(1);}}
    double t1=now();
    char go=1; write(sv[0],&go,1); read(sv[0],&go,1);
    double t2=now();
    for(size_t o=0;o<n;o+=chunk){struct uffdio_copy cp={.dst=(unsigned long)p+o+4096,.src=(unsigned long)src,.len=4096}; if(ioctl(u,UFFDIO_COPY,&cp)){perror("copy");exit(1);}}
    double t3=now();
    printf("%s: first page of each 2 MiB (new page table) %.0f ns; second page %.0f ns\n", touch?"child reads its pages meanwhile":"child idle                     ", (t1-t0)/(n/chunk),(t3-t2)/(n/chunk));
    kill(c,SIGKILL); waitpid(c,0,0);
  }
  return 0;}
