L
1kéy/✓1.0"notes*
datacontenttype
text/plain:plain text é✓