// Middle service of the runtime ground-truth tests: Go net/http server and net/http client
// (protocol in node_mid.js). A ticker goroutine calls /timer/<k> every TIMER_MS.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

var leaf string
var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16},
}

func callLeaf(path, traceparent string) error {
	req, err := http.NewRequest("GET", leaf+path, nil)
	if err != nil {
		return err
	}
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func work(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.Path, "/")
	if len(parts) != 4 || (parts[2] != "fwd" && parts[2] != "drop") {
		http.NotFound(w, r)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n < 1 {
		n = 1
	}
	pause, _ := strconv.Atoi(r.URL.Query().Get("sleep"))
	tp := ""
	if parts[2] == "fwd" {
		tp = r.Header.Get("traceparent")
	}
	for i := 0; i < n; i++ {
		if pause > 0 && i == n-1 {
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
		if err := callLeaf("/leaf/"+parts[3], tp); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

func main() {
	port := os.Args[1]
	leaf = "http://127.0.0.1:" + os.Args[2]
	timerMs, _ := strconv.Atoi(os.Args[3])
	go func() {
		t := time.NewTicker(time.Duration(timerMs) * time.Millisecond)
		for k := 1; ; k++ {
			<-t.C
			callLeaf(fmt.Sprintf("/timer/%d", k), "")
		}
	}()
	http.HandleFunc("/work/", work)
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
