// Does handing populated shmem pages back to the kernel (UFFDIO_UNREGISTER, then the kernel's own fault-around) map them
// cheaper than UFFDIO_CONTINUE? (docs/BENCHMARKS.md §23). Per case: a memfd filled with pwrite, mapped and registered
// MISSING|MINOR, then mapped by CONTINUE in 256 KiB runs / UNREGISTER of the whole range / UNREGISTER per run /
// UNREGISTER + MADV_POPULATE_READ per run, and a plain mmap without uffd (limits row 3.6); then one load per page.
// gcc -O2 -o /tmp/probe-unregister bench/probe-unregister.c && /tmp/probe-unregister 256 0   (MiB, 1 = PROT_WRITE too)
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#define RUN (256*1024)
static size_t n; static volatile long sink; static int uffd; static char *src;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static double loads(char*p){double a=now();for(size_t o=0;o<n;o+=4096)sink+=p[o];return (now()-a)/(n/4096);}
static void check(int rc,const char*w){if(rc){perror(w);exit(1);}}
static int mk(void){int fd=memfd_create("p",0);check(ftruncate(fd,n),"ft");for(size_t o=0;o<n;o+=RUN)if(pwrite(fd,src,RUN,o)!=RUN)check(1,"pw");return fd;}
static char* reg(int fd,int prot){char*p=mmap(0,n,prot,MAP_SHARED,fd,0);struct uffdio_register r={.range={(unsigned long)p,n},.mode=UFFDIO_REGISTER_MODE_MISSING|UFFDIO_REGISTER_MODE_MINOR};check(ioctl(uffd,UFFDIO_REGISTER,&r),"reg");return p;}
int main(int c,char**v){
  n=(size_t)atol(v[1])<<20; int prot=(c>2&&atoi(v[2]))?PROT_READ|PROT_WRITE:PROT_READ;
  src=aligned_alloc(4096,RUN);memset(src,7,RUN);
  uffd=syscall(SYS_userfaultfd,O_CLOEXEC|O_NONBLOCK);struct uffdio_api api={.api=UFFD_API,.features=UFFD_FEATURE_MINOR_SHMEM};check(ioctl(uffd,UFFDIO_API,&api),"api");
  for(int rep=0;rep<3;rep++){
  {int fd=mk();char*p=reg(fd,prot);double a=now();for(size_t o=0;o<n;o+=RUN){struct uffdio_continue k={.range={(unsigned long)p+o,RUN}};check(ioctl(uffd,UFFDIO_CONTINUE,&k),"cont");}double m=(now()-a)/(n/4096);double l=loads(p);printf("CONTINUE 256K runs: map %.0f + load %.0f = %.0f ns/page\n",m,l,m+l);munmap(p,n);close(fd);}
  {int fd=mk();char*p=reg(fd,prot);double a=now();struct uffdio_range r={(unsigned long)p,n};check(ioctl(uffd,UFFDIO_UNREGISTER,&r),"unreg");double m=(now()-a)/(n/4096);double l=loads(p);printf("UNREGISTER all:     unreg %.0f + load %.0f = %.0f\n",m,l,m+l);munmap(p,n);close(fd);}
  {int fd=mk();char*p=reg(fd,prot);double a=now();for(size_t o=0;o<n;o+=RUN){struct uffdio_range r={(unsigned long)p+o,RUN};check(ioctl(uffd,UFFDIO_UNREGISTER,&r),"unreg");}double m=(now()-a)/(n/4096);double l=loads(p);printf("UNREGISTER per run: unreg %.0f + load %.0f = %.0f\n",m,l,m+l);munmap(p,n);close(fd);}
  {int fd=mk();char*p=reg(fd,prot);double a=now();for(size_t o=0;o<n;o+=RUN){struct uffdio_range r={(unsigned long)p+o,RUN};check(ioctl(uffd,UFFDIO_UNREGISTER,&r),"unreg");check(madvise(p+o,RUN,MADV_POPULATE_READ),"pop");}double m=(now()-a)/(n/4096);double l=loads(p);printf("UNREG+POPULATE_READ: %.0f + load %.0f = %.0f\n",m,l,m+l);munmap(p,n);close(fd);}
  {int fd=mk();char*p=mmap(0,n,prot,MAP_SHARED,fd,0);double l=loads(p);printf("plain mmap (3.6):   load %.0f\n",l);munmap(p,n);close(fd);}
  }
}
